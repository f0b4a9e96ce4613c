"""Side-by-side benchmarks: quorate vs etcd vs PySyncObj (``python -m bench``).

Only ``bench/election.py`` and ``bench/storage_fsync.py`` are standalone
scripts; everything else here is the comparison harness of ``__main__``.
"""
