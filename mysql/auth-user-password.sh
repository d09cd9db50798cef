# Sourced by the MariaDB image's entrypoint after 10-init.sql, on first boot only: replaces the dev
# placeholder password that init.sql gives auth_user with the one in the mysql-secret Secret, which
# auth reads as MYSQL_PASSWORD. docker_process_sql and docker_sql_escape_string_literal are the
# entrypoint's own helpers (root over the local socket; quotes and backslashes escaped).
authUserPassword="$(docker_sql_escape_string_literal "$(cat /run/secrets/mysql/auth-user-password)")"
docker_process_sql --database=mysql <<<"ALTER USER 'auth_user'@'%' IDENTIFIED BY '${authUserPassword}';"
unset authUserPassword
