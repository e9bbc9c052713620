"""What a user reads and looks at: HTML pages, figures and scores.

Offers ``report`` (the model reports, the dataset index, the audit and history pages),
``plots`` (the reports' figures) and ``score`` (MusicXML of a piece and its engraving).

May import: ``musicflow.core``, ``musicflow.adapters.atomic`` (pages are written atomically),
matplotlib and verovio. Never tasks, flows or the command line; the tasks gather what a page
shows and pass it in.
"""
