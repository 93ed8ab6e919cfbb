from kthena_router.scheduling.prefix import PrefixIndex, block_hashes, prompt_text
from kthena_router.snapshot import EndpointKey

A, B = EndpointKey("10.0.0.1", 80), EndpointKey("10.0.0.2", 80)


def test_equal_prefixes_share_leading_hashes_and_diverge_after():
    one = block_hashes("m", "x" * 64 + "y" * 64, 64, 256)
    two = block_hashes("m", "x" * 64 + "z" * 64, 64, 256)
    assert one[0] == two[0]
    assert one[1] != two[1]


def test_hashes_are_seeded_with_the_model():
    assert block_hashes("m1", "x" * 64, 64, 256) != block_hashes("m2", "x" * 64, 64, 256)


def test_partial_blocks_are_ignored_and_blocks_are_capped():
    assert block_hashes("m", "x" * 63, 64, 256) == []
    assert len(block_hashes("m", "x" * 1000, 64, 256)) == 15
    assert len(block_hashes("m", "x" * 1000, 64, 4)) == 4


def test_prompt_text_reads_completions_chat_parts_and_lists():
    assert prompt_text({"prompt": "hello"}) == "hello"
    assert prompt_text({"prompt": ["a", "b"]}) == "ab"
    chat = prompt_text({"messages": [{"role": "system", "content": "be brief"},
                                     {"role": "user", "content": [{"type": "text", "text": "hi"}]}]})
    assert "be brief" in chat and "hi" in chat and chat.index("be brief") < chat.index("hi")
    assert prompt_text(None) == ""
    assert prompt_text({"prompt": 5}) == ""


def test_match_counts_contiguous_blocks_per_endpoint():
    index = PrefixIndex(100)
    hashes = block_hashes("m", "abcd" * 64, 64, 256)  # 4 blocks
    index.add(A, hashes[:2])
    index.add(B, hashes)
    assert index.match(hashes, [A, B]) == [2, 4]
    assert index.match(block_hashes("m", "zzzz" * 64, 64, 256), [A, B]) == [0, 0]


def test_each_endpoint_keeps_at_most_capacity_hashes_least_recent_out():
    index = PrefixIndex(3)
    first = block_hashes("m", "a" * 64 * 3, 64, 256)
    index.add(A, first)
    second = block_hashes("m", "b" * 64 * 2, 64, 256)
    index.add(A, second)
    assert len(index) == 3
    assert index.match(first, [A]) == [0]  # its first block was evicted
    assert index.match(second, [A]) == [2]
    assert len(index.owners) == 3


def test_forget_removes_endpoints_and_their_hashes():
    index = PrefixIndex(10)
    hashes = block_hashes("m", "q" * 128, 64, 256)
    index.add(A, hashes)
    index.add(B, hashes)
    index.forget({B})
    assert index.match(hashes, [A, B]) == [0, 2]
    index.forget(set())
    assert not index.owners and len(index) == 0
