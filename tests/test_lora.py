"""LoRA from scratch (llmbook.lora): the start at the base model, the merge identity, what trains."""

import pytest
import torch
import torch.nn as nn

from llmbook.lora import LoRALinear, add_lora, merge_lora, optimizer_state_bytes, trainable_parameters
from llmbook.models import GPT, GPTConfig

LLAMA = dict(norm="rmsnorm", mlp="swiglu", positions="rope", bias=False, n_kv_head=2)


def test_lora_layer_starts_as_the_base_layer_and_computes_w_plus_scaled_ba():
    torch.manual_seed(0)
    base = nn.Linear(12, 7)
    layer = LoRALinear(base, r=3, alpha=6)
    x = torch.randn(4, 12)
    torch.testing.assert_close(layer(x), base(x))  # B = 0
    with torch.no_grad():
        layer.B.normal_()
    expected = x @ (base.weight + 2.0 * layer.B @ layer.A).T + base.bias
    torch.testing.assert_close(layer(x), expected)
    assert layer.A.requires_grad and layer.B.requires_grad and not base.weight.requires_grad


@pytest.mark.parametrize("options", [{}, LLAMA])
def test_merged_model_gives_the_same_logits_as_the_adapted_one(options):
    torch.manual_seed(0)
    model = GPT(GPTConfig(40, 16, 2, 4, 32, **options)).eval()
    wrapped = add_lora(model, r=4, alpha=8)
    assert wrapped and all("attn" in name for name in wrapped)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.B.normal_(std=0.1)  # as if trained
    idx = torch.randint(0, 40, (2, 16))
    with torch.no_grad():
        adapted = model(idx)[0]
        merge_lora(model)
        merged = model(idx)[0]
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    torch.testing.assert_close(merged, adapted, rtol=1e-5, atol=1e-5)


def test_only_the_adapters_train_and_adamw_state_shrinks_accordingly():
    torch.manual_seed(0)
    config = GPTConfig(40, 16, 2, 4, 32, **LLAMA)
    full, adapted = GPT(config), GPT(config)
    total = trainable_parameters(full)
    add_lora(adapted, r=2, alpha=4)
    lora_numbers = trainable_parameters(adapted)
    # per layer: q_proj (32->32), kv_proj (32->32: 2 kv heads of 8, keys and values), out_proj (32->32)
    assert lora_numbers == 2 * 3 * 2 * (32 + 32)
    states = {}
    before = {n: p.detach().clone() for n, p in adapted.named_parameters()}
    for name, model in (("full", full), ("lora", adapted)):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
        model(torch.randint(0, 40, (2, 8)), torch.randint(0, 40, (2, 8)))[1].backward()
        optimizer.step()
        tensors = sum(1 for p in model.parameters() if p.requires_grad)
        states[name] = (optimizer_state_bytes(optimizer), tensors)
    # AdamW: two float32 moments per trained number, and one float32 step counter per trained tensor
    assert states["full"] == (8 * total + 4 * states["full"][1], states["full"][1])
    assert states["lora"] == (8 * lora_numbers + 4 * 2 * 3 * 2, 2 * 3 * 2)  # A and B of 3 layers in 2 blocks
    for n, p in adapted.named_parameters():
        changed = not torch.equal(before[n], p.detach())
        if n.endswith(".B"):
            assert changed, f"the adapter {n} did not train"
        if not p.requires_grad:
            assert not changed, f"the frozen {n} changed"


def test_lora_learns_a_task_with_the_base_frozen():
    torch.manual_seed(0)
    model = GPT(GPTConfig(8, 16, 1, 2, 16, **LLAMA))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    add_lora(model, r=4, alpha=8, targets=("q_proj", "kv_proj", "out_proj", "gate", "fc", "proj"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    idx = torch.arange(16).remainder(8)[None].repeat(4, 1)
    first = None
    for _ in range(80):
        loss = model(idx[:, :-1], idx[:, 1:])[1]
        first = first if first is not None else loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.9 * first  # the adapters alone lower the loss
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            base_name = name.replace(".base.", ".")
            assert torch.equal(parameter, frozen[base_name])


def test_bad_lora_arguments_name_the_fix():
    with pytest.raises(TypeError, match="torch.nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="r"):
        LoRALinear(nn.Linear(2, 2), r=0)
    with pytest.raises(ValueError, match="targets"):
        add_lora(nn.Sequential(nn.Linear(2, 2)), targets=("q_proj",))


def test_peft_applies_the_same_update_when_installed():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj = nn.Linear(8, 8)

        def forward(self, x):
            return self.q_proj(x)

    theirs = peft.get_peft_model(Tiny(), peft.LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"]))
    ours_model = Tiny()
    layer = theirs.base_model.model.q_proj
    ours_model.q_proj.load_state_dict(layer.base_layer.state_dict())
    add_lora(ours_model, r=2, alpha=4, targets=("q_proj",))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        ours_model.q_proj.A.copy_(layer.lora_A["default"].weight)
        ours_model.q_proj.B.copy_(layer.lora_B["default"].weight)
    x = torch.randn(3, 8)
    torch.testing.assert_close(ours_model(x), theirs(x))
