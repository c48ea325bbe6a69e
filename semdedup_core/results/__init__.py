"""The results folder: its names, the one writer's lock, the checks made when it is opened, the items
table and its Arrow copy, atomic writes, and :class:`Results`, the reader every command and page uses."""
