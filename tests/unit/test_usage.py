import orjson

from kthena_router.usage import JSONUsage, SSEUsage


def _event(obj) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


CHUNK = _event({"choices": [{"index": 0, "text": "a"}]})
USAGE = _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}})
DONE = b"data: [DONE]\n\n"


def test_complete_events_pass_through_unchanged_and_at_once():
    scanner = SSEUsage(suppress=False)
    assert scanner.feed(CHUNK) == CHUNK
    assert scanner.feed(CHUNK + CHUNK) == CHUNK + CHUNK


def test_a_split_event_is_held_until_its_blank_line_arrives():
    scanner = SSEUsage(suppress=False)
    assert scanner.feed(CHUNK[:10]) == b""
    assert scanner.feed(CHUNK[10:] + CHUNK[:5]) == CHUNK
    assert scanner.flush() == CHUNK[:5]


def test_injected_usage_chunk_is_read_and_hidden():
    scanner = SSEUsage(suppress=True)
    out = scanner.feed(CHUNK) + scanner.feed(USAGE[:20]) + scanner.feed(USAGE[20:] + DONE) + scanner.flush()
    assert out == CHUNK + DONE
    assert (scanner.prompt_tokens, scanner.completion_tokens) == (7, 3)


def test_usage_the_client_asked_for_is_read_and_kept():
    scanner = SSEUsage(suppress=False)
    out = scanner.feed(CHUNK + USAGE + DONE)
    assert out == CHUNK + USAGE + DONE
    assert scanner.completion_tokens == 3


def test_the_word_usage_inside_generated_text_is_not_mistaken_for_usage():
    text = _event({"choices": [{"index": 0, "text": 'the "usage" of words'}]})
    scanner = SSEUsage(suppress=True)
    assert scanner.feed(text) == text
    assert scanner.completion_tokens == 0


def test_a_stream_without_event_boundaries_is_not_held_forever():
    scanner = SSEUsage(suppress=False)
    big = b"x" * (70 * 1024)
    assert scanner.feed(big) == big


def test_json_usage_is_read_from_the_tail():
    usage = JSONUsage()
    body = orjson.dumps({"choices": [{"text": "y" * 20000}],
                         "usage": {"prompt_tokens": 12, "completion_tokens": 34, "total_tokens": 46}})
    for i in range(0, len(body), 1000):
        usage.feed(body[i:i + 1000])
    assert usage.tokens() == (12, 34)


def test_json_without_usage_counts_nothing():
    usage = JSONUsage()
    usage.feed(b'{"data": []}')
    assert usage.tokens() == (0, 0)
