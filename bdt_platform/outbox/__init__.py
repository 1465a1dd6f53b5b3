"""Where the platform sends files out: the partner SFTP server's ``/outbox/<partner>/`` in
production, ``$BDT_HOME/outbox/<partner>/`` on the embedded default. Files are published whole:
written under a temporary name and renamed when complete, so a vendor never reads half a file."""
