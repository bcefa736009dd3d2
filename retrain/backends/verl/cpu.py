"""verl 0.9.1 on CPU: imported in every Ray process through VERL_USE_EXTERNAL_MODULES.

verl expects CUDA. Its plugin points carry it to a CPU: a `cpu` device platform (gloo, a stand-in
for the torch.cuda memory/RNG calls), the FSDP engines aliased for device `cpu`, the process-group
backend fixed to plain gloo, and an `hf` rollout: a Ray actor serving transformers `generate()`
token-in/token-out, fed merged weights by the trainer after each update. This is for tests and
laptops; GPU runs use verl's own vLLM rollout.
"""
import asyncio
import os
import sys
import types
from contextlib import contextmanager

import ray
import torch
import verl.utils.import_utils as _iu
from verl.plugin.platform import PlatformBase, PlatformRegistry
from verl.workers.rollout.base import _ROLLOUT_REGISTRY, BaseRollout
from verl.workers.rollout.replica import RolloutReplica, RolloutReplicaRegistry, TokenOutput


def _zero(*a, **k): return 0


def _peak_rss_bytes(*a, **k):
    # verl logs max_memory_allocated() as actor/perf/max_memory_allocated_gb; on a CPU the process's peak
    # resident memory is the same measure (and what the TRL backend reports on a CPU).
    from retrain.core.metrics import process_peak_rss_gb
    return int(process_peak_rss_gb() * 2**30)


_cpu_mod = types.SimpleNamespace(
    # torch.cpu lacks most of the torch.cuda memory/rng API that verl calls via get_torch_device()
    is_available=lambda: True, device_count=lambda: 1, current_device=lambda: "cpu", set_device=lambda *a: None,
    synchronize=lambda *a, **k: None, empty_cache=lambda: None, ipc_collect=lambda: None,
    max_memory_allocated=_peak_rss_bytes, max_memory_reserved=_zero, memory_allocated=_zero, memory_reserved=_zero,
    reset_peak_memory_stats=lambda *a, **k: None, mem_get_info=lambda *a: (0, 0),
    set_per_process_memory_fraction=lambda *a, **k: None,
    get_rng_state=torch.get_rng_state, set_rng_state=torch.set_rng_state,
    manual_seed=torch.manual_seed, manual_seed_all=torch.manual_seed,
    get_device_name=lambda *a: "cpu", current_stream=torch.cpu.current_stream, stream=torch.cpu.stream,
    Stream=torch.cpu.Stream, Event=getattr(torch, "Event", None),
)

@PlatformRegistry.register(platform="cpu")
class PlatformCPU(PlatformBase):
    device_name = property(lambda self: "cpu")
    vendor_name = property(lambda self: "cpu")
    device_module = property(lambda self: _cpu_mod)
    def is_available(self): return True
    def is_platform_available(self, use_smi_check=False): return os.environ.get("VERL_PLATFORM", "") == "cpu"
    def current_device(self): return "cpu"          # NOT 0: torch treats int 0 as an accelerator index
    def device_count(self): return 1
    def set_device(self, device_index): pass
    def synchronize(self, device_index=None): pass
    def manual_seed(self, seed): torch.manual_seed(seed)
    def manual_seed_all(self, seed): torch.manual_seed(seed)
    def set_allocator_settings(self, settings): pass
    def empty_cache(self): pass
    def get_device_capability(self, device_index=0): return (None, None)
    def communication_backend_name(self): return "gloo"
    def visible_devices_envvar(self): return "CUDA_VISIBLE_DEVICES"
    @contextmanager
    def nvtx_range(self, msg): yield
    def profiler_start(self): pass
    def profiler_stop(self): pass
    def ray_resource_name(self): return "GPU"       # keep verl's placement-group/resource checks happy (fake GPUs)
    def ray_noset_envvars(self): return []
    def is_ipc_supported(self): return False
    def cudart(self): return None

# initialize_global_process_group_ray builds "cpu:gloo,cpu:gloo" -> torch rejects duplicate device types
def _patch_pg():
    import verl.utils.distributed as d
    orig = d.initialize_global_process_group_ray
    def init_pg(timeout_second=None, backend=None):
        return orig(timeout_second=timeout_second, backend=backend or "gloo")
    d.initialize_global_process_group_ray = init_pg
    return init_pg


# -- the "hf" rollout: transformers generate() behind verl's rollout-server interface ------------



class HFServer:
    """Ray actor that owns a CPU copy of the policy and serves token-in/token-out generate()."""

    def __init__(self, config, model_config):
        from transformers import AutoModelForCausalLM
        from verl.utils.config import omega_conf_to_dataclass
        self.config = omega_conf_to_dataclass(config)             # RolloutConfig
        mc = omega_conf_to_dataclass(model_config)                  # HFModelConfig
        self.model = AutoModelForCausalLM.from_pretrained(mc.local_path, torch_dtype=torch.float32).eval()
        torch.manual_seed(self.config.seed)                         # rollout.seed = training.seed: sampling is seeded
        self.eos = mc.tokenizer.eos_token_id
        self.pad = mc.tokenizer.pad_token_id if mc.tokenizer.pad_token_id is not None else self.eos
        self.global_steps = None
        self.lock = asyncio.Lock()
        self.pending = []
        self.drainer = None

    async def generate(self, request_id, prompt_ids, sampling_params, image_data=None, video_data=None,
                       audio_data=None, mm_processor_kwargs=None, **kw):
        # Concurrent requests (a step's rollouts, episodes' turns) are batched into one generate().
        limit = self.config.response_length
        budget = min(int(sampling_params.get("max_tokens") or limit), limit)  # an episode's turn asks for less
        t = float(sampling_params.get("temperature", 1.0))
        key = (t, float(sampling_params.get("top_p", 1.0)), int(sampling_params.get("top_k", -1)),
               bool(sampling_params.get("logprobs")))
        future = asyncio.get_running_loop().create_future()
        self.pending.append((list(prompt_ids), budget, key, future))
        if self.drainer is None or self.drainer.done():
            self.drainer = asyncio.create_task(self._drain())
        new, logps = await future
        return TokenOutput(token_ids=new, log_probs=logps, stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps})

    async def _drain(self):
        while self.pending:
            await asyncio.sleep(0.01)                              # let the rest of the step's requests arrive
            key = self.pending[0][2]
            batch = [p for p in self.pending if p[2] == key]
            self.pending = [p for p in self.pending if p[2] != key]
            try:
                async with self.lock:                              # never while weights load
                    results = await asyncio.to_thread(self._generate_batch, batch, key)
            except Exception as exc:
                for *_, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (*_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _generate_batch(self, batch, key):
        temperature, top_p, top_k, want_logprobs = key
        width = max(len(ids) for ids, *_ in batch)
        input_ids = torch.tensor([[self.pad] * (width - len(ids)) + ids for ids, *_ in batch])
        attention = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids, *_ in batch])
        gen_kw = dict(max_new_tokens=max(b for _, b, *_ in batch), eos_token_id=self.eos, pad_token_id=self.pad,
                      return_dict_in_generate=True, output_scores=want_logprobs)
        if temperature > 0:
            # top_k 0 turns top-k off, as TRL's GenerationConfig(top_k=0) does; None would fall back to the model's
            # generation_config (50 by default) and sample differently from TRL (found by the regression's runs).
            gen_kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=max(0, top_k))
        else:
            gen_kw.update(do_sample=False)
        with torch.no_grad():
            out = self.model.generate(input_ids, attention_mask=attention, **gen_kw)
        scores = (self.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
                  if want_logprobs else None)
        results = []
        for row, (_, budget, *_) in enumerate(batch):
            new = out.sequences[row, width:].tolist()[:budget]
            if self.eos in new:
                new = new[: new.index(self.eos) + 1]
            results.append((new, scores[row, : len(new)].tolist() if scores is not None else None))
        return results

    async def load_weights(self, state_dict, global_steps=None):
        async with self.lock:
            load_every_weight(self.model, state_dict)
            self.global_steps = global_steps

    async def set_global_steps(self, global_steps):
        self.global_steps = global_steps

    # lifecycle no-ops used by RolloutReplica / CheckpointEngineManager
    async def wake_up(self, tags=None): pass
    async def sleep(self): pass
    async def clear_kv_cache(self): pass
    async def release_kv_cache(self): pass
    async def resume_kv_cache(self): pass
    async def abort_all_requests(self, **kw): return {"aborted_count": 0, "request_ids": []}
    async def resume_generation(self): pass
    async def start_profile(self, **kw): pass
    async def stop_profile(self): pass


def load_every_weight(model, state_dict):
    """Load the trainer's weights into the rollout model, all of them: a name the model lacks, or a parameter
    of the model that did not come (other than one tied to a parameter that did, like lm_head to the
    embeddings), is an error. A partial load would leave rollouts on the initial weights without a word."""
    result = model.load_state_dict(state_dict, strict=False)
    own = model.state_dict()
    loaded_storage = {own[name].data_ptr() for name in state_dict if name in own}
    missing = [name for name in result.missing_keys if own[name].data_ptr() not in loaded_storage]
    if missing or result.unexpected_keys:
        raise RuntimeError(
            "retrain's CPU rollout server got weights that do not match its model: "
            f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} ({len(missing)}), "
            f"unknown {list(result.unexpected_keys)[:5]} ({len(result.unexpected_keys)}); rollouts would use stale "
            "weights, so training stops here (please report this with the model's name)"
        )


class HFReplica(RolloutReplica):
    async def launch_servers(self):
        name = f"hf_server_{self.replica_rank}_0"
        server = ray.remote(HFServer).options(name=name, num_cpus=0, max_concurrency=64).remote(
            self.config, self.model_config)
        self.servers = [server]
        self._server_handle = server
        self._server_address = name                                # only used as a dict key by the router


class HFServerAdapter(BaseRollout):
    """Lives inside ActorRolloutRefWorker; receives weights from the FSDP engine in update_weights()."""

    def __init__(self, config, model_config, device_mesh, *a, **k):
        super().__init__(config, model_config, device_mesh)
        self.sleep_level = 2

    def _server(self):
        return ray.get_actor("hf_server_0_0")

    async def resume(self, tags): pass
    async def release(self): pass

    async def update_weights(self, weights, wire_format="named_tensors", global_steps=None, peft_config=None, **kw):
        # use model.lora.merge=True so that `weights` are full merged HF-named tensors
        sd = {n: (t.full_tensor() if hasattr(t, "full_tensor") else t).detach().to("cpu", torch.float32).clone()
              for n, t in weights}
        if int(os.environ.get("RANK", "0")) == 0:
            await self._server().load_weights.remote(sd, global_steps)


RolloutReplicaRegistry.register("hf", lambda: HFReplica)
_ROLLOUT_REGISTRY[("hf", "async")] = f"{__name__}.HFServerAdapter"

# apply at import time (this module is imported from verl/__init__.py via VERL_USE_EXTERNAL_MODULES,
# i.e. before verl.workers.engine_workers binds `initialize_global_process_group_ray` by name)
_patch_pg()
os.environ.setdefault("VERL_ENGINE_DEVICE", "cuda")   # pick the FSDP engine registered for "cuda"

# trl 1.16 has neither trl.AutoModelForCausalLMWithValueHead nor trl.experimental.ppo -> verl's
# apply_monkey_patch crashes; pretend trl is absent (only needed for value-head critics).

def _no_trl():
    return False


_iu.is_trl_available = _no_trl  # type: ignore[assignment]
# Modules that imported the function by name before this plugin loaded (in one process that used verl
# already, e.g. a test session) keep their own reference: point those at it too.
for _name in ("verl.models.transformers.monkey_patch", "verl.utils.model"):
    _module = sys.modules.get(_name)
    if _module is not None and hasattr(_module, "is_trl_available"):
        setattr(_module, "is_trl_available", _no_trl)  # noqa: B010


# PPO's critic: verl loads the value model as AutoModelForTokenClassification (one label) with
# attn_implementation="flash_attention_2" written in, which no CPU has; the same model with sdpa.
def _load_value_model(local_path, torch_dtype, model_config, trust_remote_code):
    from transformers import AutoModelForTokenClassification

    return AutoModelForTokenClassification.from_pretrained(
        pretrained_model_name_or_path=local_path, torch_dtype=torch_dtype, config=model_config,
        attn_implementation="sdpa", trust_remote_code=trust_remote_code,
    )


import verl.utils.model as _model  # noqa: E402

_model.load_valuehead_model = _load_value_model  # type: ignore[assignment]
