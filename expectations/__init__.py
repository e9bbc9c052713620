"""Great Expectations suites as JSON (package data), loaded at run time by ``tasks/validate.py``.

``midi_files.json`` is the validation policy: quarantine expectations in precedence order, then
warning expectations; each one's ``meta`` says what a failing row gets.
"""
