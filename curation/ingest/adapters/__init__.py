"""One module per source family; each exposes `detect(record) -> bool` and `parse(record)`."""
