"""Reading data: dataset files of (prompt, output length) examples (`datasets`) and the sidecar's trace
files (`traces`). Pure I/O and parsing; imports nothing else of the project."""
