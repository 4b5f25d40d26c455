"""Qt item models over core objects: the module tree, the parameter table, tie highlights."""
