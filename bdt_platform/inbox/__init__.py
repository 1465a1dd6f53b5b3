"""Where partner drops arrive: a local folder (embedded default) or an SFTP server."""
