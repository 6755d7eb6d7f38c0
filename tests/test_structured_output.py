"""Structured outputs: each backend's spelling, vLLM's renamed parameter found by signature, `auto` falling back once
per endpoint against a loopback server that refuses `response_format`, the cache keys, and llama.cpp's JSON-schema
grammar on SmolLM2 (the only test here that runs a model)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import types

import pytest
from mga.distill.core.config import GenerationParams, TeacherConfig
from mga.distill.core.errors import MgaError
from mga.distill.generate import structured
from mga.distill.generate.cache import RequestCache, request_key
from mga.distill.generate.local import LocalGenerator
from mga.distill.generate.protocol import Request
from mga.distill.generate.teacher import OpenAIGenerator
from mga.distill.pipeline.recipe import validate_recipe
from mga.judge.llm_judge import VERDICT_SCHEMA, validate as validate_verdict
from mga.judge.pairs_check import pairs_json_schema, parse_pairs

from tests.fake_openai import Reply

SCHEMA = pairs_json_schema(5)


def request(mode: str = "off", schema: dict | None = SCHEMA, key: str = "a", **params) -> Request:
    return Request(key, [{"role": "user", "content": f"pairs for {key}"}],
                   GenerationParams(**{"temperature": 0.0, "max_tokens": 64, "structured_output": mode, **params}),
                   schema=schema)


def good_pairs(tag: str = "") -> str:
    return json.dumps({"pairs": [{"genre": f"genre {i} {tag}", "audience": f"audience {i}"} for i in range(5)]})


# ---- spelling ------------------------------------------------------------------------------------------------


def test_each_backend_spells_the_schema_its_own_way():
    assert structured.openai_response_format(request("json_schema")) == {
        "type": "json_schema", "json_schema": {"name": structured.SCHEMA_NAME, "schema": SCHEMA}}
    assert structured.openai_response_format(request("auto")) == structured.openai_response_format(request("json_schema"))
    assert structured.openai_response_format(request("json_object")) == {"type": "json_object"}
    assert structured.llamacpp_response_format(request("json_schema")) == {"type": "json_object", "schema": SCHEMA}
    assert structured.llamacpp_response_format(request("json_object")) == {"type": "json_object"}
    for off in (request("off"), request("json_schema", schema=None)):  # off, or a stage without a schema
        assert structured.openai_response_format(off) is None
        assert structured.llamacpp_response_format(off) is None


def test_a_refusal_is_recognised_only_when_it_names_the_format():
    assert structured.refused(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported")
    assert structured.refused(422, "{'detail': [{'loc': ['body', 'response_format', 'type'], 'msg': 'Input should "
                                   "be 'text' or 'json_object''}]}")  # llama-cpp-python's server (FastAPI)
    # llama-cpp-python's server (0.3.36) wraps its validation error in a 500
    assert structured.refused(500, "Error code: 500 - 1 validation error: {'type': 'literal_error', 'loc': ('body', "
                                   "'response_format', 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}")
    assert not structured.refused(400, "This model's maximum context length is 2048 tokens")
    assert not structured.refused(500, "CUDA out of memory while compiling the grammar")  # retried, never dropped
    assert not structured.refused(503, "Service Unavailable")


def _fake_vllm(name: str, parameter: str | None, params_class: str | None, *, msgspec_like: bool = False):
    """A stand-in `vllm.sampling_params` module: SamplingParams with the given structured parameter, and its class."""
    module = types.ModuleType(name)
    fields = ["temperature", "top_p", "max_tokens", "seed", "repetition_penalty"] + ([parameter] if parameter else [])
    if msgspec_like:  # vLLM's SamplingParams is a msgspec Struct: its fields, not a plain signature, name the parameters
        sampling = type("SamplingParams", (), {"__struct_fields__": tuple(fields), "__init__": lambda self, **kw: None})
    else:
        sampling = dataclasses.make_dataclass("SamplingParams", [(f, object, None) for f in fields])
    sampling.__module__ = name
    module.SamplingParams = sampling
    if params_class:
        spec = dataclasses.make_dataclass(params_class, [("json", object, None), ("json_object", object, None)])
        spec.__module__ = name
        setattr(module, params_class, spec)
    sys.modules[name] = module
    return module


@pytest.mark.parametrize(("parameter", "params_class", "msgspec_like"), [
    ("structured_outputs", "StructuredOutputsParams", False),  # vLLM >= 0.12
    ("structured_outputs", "StructuredOutputsParams", True),
    ("guided_decoding", "GuidedDecodingParams", False),  # vLLM 0.6 - 0.11
])
def test_the_vllm_shim_picks_the_parameter_the_installed_version_has(parameter, params_class, msgspec_like):
    module = _fake_vllm(f"fake_vllm_{parameter}_{msgspec_like}", parameter, params_class, msgspec_like=msgspec_like)
    options = structured.vllm_sampling_options(module.SamplingParams, request("json_schema"))
    assert list(options) == [parameter]
    assert type(options[parameter]) is getattr(module, params_class)
    assert options[parameter].json == SCHEMA and options[parameter].json_object is None
    auto = structured.vllm_sampling_options(module.SamplingParams, request("auto"))[parameter]
    assert auto.json == SCHEMA  # vLLM takes a schema: auto uses it
    any_json = structured.vllm_sampling_options(module.SamplingParams, request("json_object"))[parameter]
    assert any_json.json_object is True and any_json.json is None
    assert structured.vllm_sampling_options(module.SamplingParams, request("off")) == {}
    if not msgspec_like:
        module.SamplingParams(temperature=0.0, **options)  # the arguments fit the constructor


def test_a_vllm_without_either_parameter_refuses_a_schema_and_lets_auto_go_on():
    module = _fake_vllm("fake_vllm_none", None, None)
    assert structured.vllm_sampling_options(module.SamplingParams, request("auto")) == {}
    with pytest.raises(MgaError, match="neither structured_outputs nor guided_decoding"):
        structured.vllm_sampling_options(module.SamplingParams, request("json_schema"))


def test_transformers_answers_auto_unconstrained_and_refuses_a_schema_with_one_line(tiny_model_dir):
    generator = LocalGenerator(str(tiny_model_dir), backend="transformers")
    params = {"max_tokens": 4}
    (result,) = generator.run([request("auto", **params)])
    assert result.ok and result.completion.completion_tokens > 0
    for mode in ("json_schema", "json_object"):
        with pytest.raises(MgaError, match=f"structured_output: {mode} needs constrained decoding.*transformers"):
            list(generator.run([request(mode, **params)]))


# ---- recipe keys ---------------------------------------------------------------------------------------------


def test_recipe_keys_validate_and_a_partial_section_keeps_the_calls_own_defaults():
    cfg = validate_recipe({"name": "x", "teacher": {"pairs": {"structured_output": "auto"},
                                                    "judge": {"structured_output": "json_schema",
                                                              "repetition_penalty": 1.1}}})
    assert cfg.teacher.pairs.structured_output == "auto" and cfg.teacher.pairs.temperature == 1.0
    assert cfg.teacher.judge.temperature == 0.0 and cfg.teacher.judge.repetition_penalty == 1.1
    for wrong, message in (({"pairs": {"structured_output": "yes"}}, "teacher.pairs.structured_output"),
                           ({"rewrite": {"structured_output": "auto"}}, "a rewrite is free text"),
                           ({"judge": {"repetition_penalty": 0}}, "teacher.judge.repetition_penalty"),
                           ({"backend": "transformers", "model": "ckpt", "judge": {"structured_output": "json_object"}},
                            "teacher.judge.structured_output: json_object needs constrained decoding")):
        with pytest.raises(MgaError, match=message):
            validate_recipe({"name": "x", "teacher": wrong})


# ---- cache keys ----------------------------------------------------------------------------------------------


def test_cache_keys_hold_the_mode_and_schema_and_old_keys_stay_valid():
    off = request("off")
    # the key as it was computed before structured output existed: old caches must keep answering `off` requests
    before = json.dumps(["m", off.messages, {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": None}, False, 0,
                         "http://x/v1"], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    assert request_key("m", off, 0, "http://x/v1") == hashlib.sha256(before.encode()).hexdigest()
    assert request_key("m", off) == request_key("m", request("off", schema=None))  # off: the schema plays no part
    keys = {request_key("m", r) for r in (off, request("auto"), request("json_schema"), request("json_object"),
                                          request("json_schema", schema=pairs_json_schema(3)),
                                          request("off", repetition_penalty=1.2))}
    assert len(keys) == 6


# ---- the OpenAI-compatible client ----------------------------------------------------------------------------


def _cfg(urls, **kw) -> TeacherConfig:
    return TeacherConfig(base_url=urls, model="teacher-x", concurrency=1, timeout_s=2.0, max_attempts=2,
                         backoff_base_s=0.01, backoff_max_s=0.02, api_key_env="MGA_TEST_KEY", **kw)


def _pairs_answer(body: dict) -> Reply:
    return Reply(content=good_pairs(body["messages"][-1]["content"]))


def _run(generator: OpenAIGenerator, requests: list[Request]) -> list:
    return list(generator.run(requests, validate=lambda c: parse_pairs(c.text), max_attempts=1))


def test_auto_falls_back_once_per_endpoint_and_remembers_it_for_the_run(fake_openai, capsys):
    refusing = fake_openai(_pairs_answer, refuse_formats=("json_schema",))
    honouring = fake_openai(_pairs_answer)
    generator = OpenAIGenerator(_cfg([refusing.url, honouring.url]), preflight=False)
    results = _run(generator, [request("auto", key=f"d{i}") for i in range(8)])
    assert all(r.ok for r in results) and len(results) == 8
    refused = [b for b in refusing.requests if "response_format" in b]
    assert len(refused) == 1  # refused once, then every request to it goes without
    assert refusing.received == 1 + sum("response_format" not in b for b in refusing.requests)
    assert honouring.requests and all(b["response_format"]["json_schema"]["schema"] == SCHEMA
                                      for b in honouring.requests)  # the other endpoint keeps the schema
    assert capsys.readouterr().err.count("refused structured output") == 1
    # a later stage of the same run: remembered, nothing refused again, nothing said again
    refusing.requests.clear()
    _run(generator, [request("auto", key=f"e{i}") for i in range(6)])
    assert refusing.requests and not any("response_format" in b for b in refusing.requests)
    assert "refused structured output" not in capsys.readouterr().err


def test_an_explicit_schema_that_the_endpoint_refuses_fails_with_its_reason(fake_openai):
    server = fake_openai(_pairs_answer, refuse_formats=("json_schema",))
    generator = OpenAIGenerator(_cfg(server.url, fail_fast_after=2), preflight=False)
    with pytest.raises(MgaError, match="response_format.*structured_output auto"):
        _run(generator, [request("json_schema", key=f"d{i}") for i in range(3)])
    assert server.received == 2  # a 400 is final: no retries, and the run stops at fail_fast_after


def test_off_sends_no_format_and_repetition_penalty_goes_in_the_body_only_when_set(fake_openai):
    server = fake_openai(_pairs_answer)
    generator = OpenAIGenerator(_cfg(server.url), preflight=False)
    _run(generator, [request("off", key="plain"), request("json_object", key="json", repetition_penalty=1.15)])
    bodies = {b["messages"][-1]["content"]: b for b in server.requests}
    plain, constrained = bodies["pairs for plain"], bodies["pairs for json"]
    assert not {"response_format", "repetition_penalty", "repeat_penalty"} & set(plain)
    assert constrained["response_format"] == {"type": "json_object"}
    assert constrained["repetition_penalty"] == constrained["repeat_penalty"] == 1.15  # vLLM/SGLang and llama.cpp


def test_a_cached_unconstrained_answer_is_not_reused_for_a_schema_request(fake_openai, tmp_path):
    server = fake_openai(_pairs_answer)
    generator = OpenAIGenerator(_cfg(server.url), cache=RequestCache(tmp_path / "cache.sqlite"), preflight=False)
    _run(generator, [request("off")])
    _run(generator, [request("off")])
    assert server.received == 1  # the same request: cached
    _run(generator, [request("json_schema")])
    assert server.received == 2 and server.requests[-1]["response_format"]["type"] == "json_schema"


# ---- llama.cpp's JSON-schema grammar on a real model ---------------------------------------------------------


@pytest.mark.real_model
def test_llamacpp_json_schema_gives_smollm2_answers_in_the_schemas_shape(smollm2_f16_gguf):
    from mga.distill.core.prompts import pairs_messages, judge_messages
    from mga.judge.reference import default_reference_path, reference_chunk_rows

    text = min((row["meta"]["raw_text"] for row in reference_chunk_rows(default_reference_path("en"))), key=len)
    generator = LocalGenerator(str(smollm2_f16_gguf), backend="llamacpp")
    params = GenerationParams(temperature=0.0, max_tokens=150, structured_output="json_schema")
    pairs = Request("pairs", pairs_messages(text, "en", 2), params, schema=pairs_json_schema(2))
    verdict = Request("judge", judge_messages(text, text, "en"), params, schema=VERDICT_SCHEMA)
    answers = {r.request.key: r.completion for r in generator.run([pairs, verdict])}
    shape = json.loads(answers["pairs"].text)
    assert set(shape) == {"pairs"} and len(shape["pairs"]) == 2, answers["pairs"].text
    assert all(set(p) == {"genre", "audience"} and all(isinstance(v, str) and v for v in p.values())
               for p in shape["pairs"])
    judged, reason = validate_verdict(answers["judge"])
    assert reason is None and judged["score"] in range(1, 6), answers["judge"].text


def test_the_dry_run_says_which_stages_carry_a_schema(tmp_path, short_corpus):
    from mga.distill.pipeline.dry_run import dry_run

    cfg = validate_recipe({"name": "dry", "run_dir": str(tmp_path / "run"), "corpus": {"path": str(short_corpus)},
                           "teacher": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "MGA_TEST_NO_KEY",
                                       "pairs": {"structured_output": "auto"}, "judge": {"structured_output": "json_schema"}},
                           "judge": {"backend": "llm"}, "quantize": {"schemes": []}})
    notes = {estimate.stage: " ".join(estimate.notes) for estimate in dry_run(cfg)}
    assert "structured output auto" in notes["label-pairs"]
    assert "structured output json_schema" in notes["judge@teacher.base"]
    assert "structured output" not in notes["label-rewrites@base"]  # a rewrite has no schema


@pytest.mark.real_model
def test_auto_against_llamacpp_server_falls_back_once_and_still_answers(llama_server, capsys):
    """llama-cpp-python's server takes `text` or `json_object` only and refuses a json_schema format with a 500."""
    from mga.distill.core.prompts import pairs_messages
    from mga.distill.generate.endpoint import display_url

    cfg = TeacherConfig(base_url=llama_server.url, model=llama_server.alias, concurrency=1, timeout_s=120, max_attempts=1)
    generator = OpenAIGenerator(cfg)
    params = GenerationParams(temperature=0.0, max_tokens=8, structured_output="auto")
    requests = [Request(f"d{i}", pairs_messages(f"Document {i}: the break statement ends the nearest loop.", "en", 2),
                        params, schema=pairs_json_schema(2)) for i in range(2)]
    results = list(generator.run(requests))
    assert [r.completion is not None and r.completion.completion_tokens > 0 for r in results] == [True, True]
    assert generator.no_format == {display_url(llama_server.url)}
    assert capsys.readouterr().err.count("refused structured output") == 1
