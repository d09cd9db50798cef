"""Error kinds the consumer loop acts on: a PermanentError sends the message to the dead-letter queue."""


class PermanentError(Exception):
    """The message can never succeed (bad message, unreadable video, rejected recipient): retrying is pointless.

    str(error) is a short human reason; it ends up in the job's `error` field and in the user's email.
    """
