"""``paramscope bench``: the app's speed against plain torch, each step in the same run."""
