"""mp3core: what every mp3converter service does the same way, in one place.

contract (queues, messages, statuses, options, ids, file names), consumer (the AMQP loop), gridchunks (GridFS
I/O), logs, settings, errors, health, metrics, mongo (retries), http (the Flask services' error mapping and
request metrics).
"""
