import re
from pathlib import Path

import orjson

from kthena_router.errors import ERROR_TABLE

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_router_error_is_in_the_readme_error_table_with_its_status():
    rows = set(re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", README.read_text(), flags=re.M))
    for error in ERROR_TABLE:
        assert (str(error.status), error.reason) in rows, error.__name__


def test_error_bodies_are_openai_error_objects():
    for error in ERROR_TABLE:
        body = orjson.loads(error("something went wrong").body())
        assert body == {"error": {"message": "something went wrong", "type": error.type, "code": error.reason}}
