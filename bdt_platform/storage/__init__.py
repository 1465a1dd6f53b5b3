"""Where data is kept: the lake (files, any fsspec backend) and the warehouse (SQL tables)."""
