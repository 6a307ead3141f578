"""Release: targets config, target plug-ins, torrents, source bundle, journal, release record."""
