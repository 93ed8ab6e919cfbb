from kthena_router.endpoints.state import LoraInfo
from kthena_router.scheduling.plugins import lora_affinity


def test_loaded_beats_free_slot_beats_waiting(world):
    world.scraped(0, lora=LoraInfo(2, frozenset({"other"}), frozenset({"sql"})))  # full, sql waiting
    world.scraped(1, lora=LoraInfo(4, frozenset({"other"}), frozenset()))  # a free slot
    world.scraped(2, lora=LoraInfo(1, frozenset({"sql"}), frozenset()))  # loaded
    scores = lora_affinity.Plugin(lora_affinity.Args(), world.env).score(world.ctx("sql"), world.endpoints)
    assert scores == [0.6, 0.8, 1.0]


def test_no_slot_and_not_waiting_scores_zero(world):
    world.scraped(0, lora=LoraInfo(1, frozenset({"other"}), frozenset()), adapters=frozenset({"sql"}))
    world.scraped(1, lora=LoraInfo(1, frozenset({"sql"}), frozenset()))
    scores = lora_affinity.Plugin(lora_affinity.Args(), world.env).score(world.ctx("sql"), world.endpoints)
    assert scores == [0.0, 1.0, 0.0]


def test_base_model_requests_score_one_everywhere(world):
    world.scraped(0, lora=LoraInfo(1, frozenset({"sql"}), frozenset()), adapters=frozenset({"sql"}))
    scores = lora_affinity.Plugin(lora_affinity.Args(), world.env).score(world.ctx("base"), world.endpoints)
    assert scores == [1.0, 1.0, 1.0]
