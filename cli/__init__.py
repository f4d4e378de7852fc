"""metaparse: the command-line client of the metaparse service (`metaparse` or `python -m cli`).

client.py speaks HTTP; urls.py reads URL lists; waiting.py follows batches to the end;
results.py puts each URL's final state in input order; output.py and records.py turn
answers into text (exports come from the server as it formats them); commands.py runs
each command; main.py parses the command line and turns failures into exit codes.
"""
