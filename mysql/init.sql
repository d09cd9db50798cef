-- MariaDB/MySQL bootstrap for the auth service: its database and account only. The tables are created by
-- auth itself at start and by `python -m auth create-user` (auth/auth/db.py holds the only DDL).
CREATE DATABASE IF NOT EXISTS `auth` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- dev-only placeholder password; the Kubernetes Secret / init script sets the real one.
CREATE USER IF NOT EXISTS 'auth_user'@'%' IDENTIFIED BY 'dev-only-placeholder-auth-db-password';
-- auth creates its own tables if they are missing and adds the columns an older installation lacks, hence
-- CREATE/INDEX/ALTER besides DML.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `auth`.* TO 'auth_user'@'%';
