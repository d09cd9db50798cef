-- MariaDB/MySQL bootstrap for the auth service: database, its account, and the schema (no user rows).
CREATE DATABASE IF NOT EXISTS `auth` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;

-- dev-only placeholder password; the Kubernetes Secret / init script sets the real one.
CREATE USER IF NOT EXISTS 'auth_user'@'%' IDENTIFIED BY 'dev-only-placeholder-auth-db-password';
-- auth creates its own tables at start (CREATE TABLE IF NOT EXISTS), hence CREATE/INDEX besides DML.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX ON `auth`.* TO 'auth_user'@'%';

USE `auth`;

-- Same DDL as auth/auth/users.py (USER_TABLE_DDL); a unit test keeps them identical.
CREATE TABLE IF NOT EXISTS `user` (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(255) NOT NULL UNIQUE,
  password_hash VARCHAR(255) NOT NULL,
  is_admin BOOLEAN NOT NULL DEFAULT FALSE,
  created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Failed-login counters for the login rate limit (auth/auth/throttle.py); LOGIN_FAILURE_TABLE_DDL.
CREATE TABLE IF NOT EXISTS login_failure (
  scope VARCHAR(16) NOT NULL,
  subject VARCHAR(255) NOT NULL,
  window_start BIGINT NOT NULL,
  failures INT UNSIGNED NOT NULL,
  PRIMARY KEY (scope, subject)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
