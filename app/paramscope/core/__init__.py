"""Qt-free core of paramscope: reports, statistics, sources, commands. Never imports Qt."""
