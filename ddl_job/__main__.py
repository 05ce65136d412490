import sys

from .cli import main
from .lifeline import tie_to_parent

tie_to_parent()   # a step's processes (pg_dump, psql, we) die with whoever started us
sys.exit(main())
