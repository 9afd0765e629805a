"""Reading a folder into the store: scan, decode safely, embed, write (read -> embed -> write as separate steps)."""
