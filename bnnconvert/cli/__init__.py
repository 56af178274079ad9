"""Command line of bnnconvert: parse, call the library, render."""
