"""Synthetic parts of the bundled demo disk, made here from nothing (they can ship with the tool):
a Windows Server 2016 style SYSTEM and SOFTWARE hive written with offline-fix's own hive writer
(system.py, from the service table in services_2016.py) and minimal PE driver files (pe.py)."""
