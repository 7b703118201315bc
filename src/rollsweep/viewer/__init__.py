"""The rollout viewer: ``ng_viewer +input_jsonl_fpath=FILE`` / ``rollsweep view FILE [FILE2]``.

A local web page (127.0.0.1 only) over rollout files of any size: the file is indexed once
(byte offsets plus reward, task, repeat) and rows are read by offset when shown. Its command
lines are in rollsweep.cli.
"""

HOST = "127.0.0.1"
DEFAULT_PORT = 7860
