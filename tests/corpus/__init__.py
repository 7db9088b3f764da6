"""Conformance corpus: committed valid files (``valid/``) and crafted invalid ones (``build``).

``samples`` holds the objects behind the valid files and an exact comparison; ``build``
crafts every invalid file from a valid one; ``probe`` lists the public entry points a file
is read through and which checks each of them performs.
"""
