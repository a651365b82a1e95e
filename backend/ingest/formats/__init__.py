"""One parser per input format. Each turns bytes into `Sample`s plus counts of what it
could not map; none of them touches the database."""
