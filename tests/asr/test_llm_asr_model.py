"""LlmASRModel: matching loss between adapter outputs and LLM text embeddings."""

import pytest
import torch
from tiny_models import save_tiny_llm

from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter
from espnet_llm_plugin.asr.matching_loss import CrossAttentionMatchingLoss

VOCAB = ["<pad>", "<unk>", "<s>", "</s>", "yes", "no", "up", "down", "left", "right"]
HIDDEN = 16


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    return save_tiny_llm(
        tmp_path_factory.mktemp("llm"),
        VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )


def build_model(llm_path, matching_weight):
    return build_with_symbols(llm_path, sym_sos="</s>", sym_eos="</s>", matching_weight=matching_weight)


BATCH = dict(
    speech=torch.randn(3, 24, 8),
    speech_lengths=torch.tensor([24, 20, 12]),
    text=torch.tensor([[4, 6, 8], [5, -1, -1], [-1, -1, -1]]),
    text_lengths=torch.tensor([3, 1, 0]),
)


def test_weight_zero_is_espnet_model(tiny_llm):
    from espnet2.asr.espnet_model import ESPnetASRModel

    ours = build_model(tiny_llm, 0.0).eval()
    loss, stats, _ = ours(**BATCH)
    plain_loss, plain_stats, _ = ESPnetASRModel.forward(ours, **BATCH)
    assert torch.equal(loss, plain_loss) and "loss_match" not in stats


def test_matching_loss_is_logged_added_and_trains_the_adapter(tiny_llm):
    model = build_model(tiny_llm, 0.5)
    loss, stats, _ = model(**BATCH)
    assert stats["loss_match"] > 0
    assert torch.allclose(loss, stats["loss_att"] + 0.5 * stats["loss_match"], atol=1e-5)
    model.zero_grad()
    model._match_loss = None
    model.matching(*_adapter_and_text(model)).backward()
    assert model.postencoder.mlp[0].weight.grad.abs().sum() > 0
    assert model.encoder.embed[0].weight.grad.abs().sum() > 0
    emb = model.decoder.text_embedding().weight
    assert emb.grad is None or emb.grad.abs().sum() == 0  # targets are not pulled


def _adapter_and_text(model):
    enc, enc_lens = model.encode(BATCH["speech"], BATCH["speech_lengths"])
    tokens = BATCH["text"].masked_fill(BATCH["text"] < 0, 0)
    return enc, enc_lens, model.decoder.text_embedding()(tokens), BATCH["text_lengths"]


def test_matching_loss_decreases_with_training(tiny_llm):
    model = build_model(tiny_llm, 1.0)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(25):
        loss, stats, _ = model(**BATCH)
        first = first if first is not None else float(stats["loss_match"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(stats["loss_match"]) < 0.5 * first


def test_cosine_distance_and_bad_options():
    m = CrossAttentionMatchingLoss(8, num_heads=2, distance="cosine")
    x = torch.randn(2, 5, 8)
    loss = m(x, torch.tensor([5, 3]), torch.randn(2, 4, 8), torch.tensor([4, 2]))
    assert 0 <= float(loss) <= 2
    assert float(m(x, torch.tensor([5, 3]), torch.randn(2, 4, 8), torch.tensor([0, 0]))) == 0.0
    with pytest.raises(ValueError, match="matching_distance"):
        CrossAttentionMatchingLoss(8, distance="l1")
    with pytest.raises(ValueError, match="matching_num_heads"):
        CrossAttentionMatchingLoss(10, num_heads=4)


def test_matching_needs_an_llm_decoder(tiny_llm):
    from espnet2.asr.ctc import CTC
    from espnet2.asr.decoder.transformer_decoder import TransformerDecoder
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    from espnet_llm_plugin.asr.llm_asr_model import LlmASRModel

    with pytest.raises(ValueError, match="decoder: llm"):
        LlmASRModel(
            vocab_size=len(VOCAB),
            token_list=VOCAB,
            frontend=None,
            specaug=None,
            normalize=None,
            preencoder=None,
            encoder=TransformerEncoder(8, output_size=16, num_blocks=1, input_layer="linear"),
            postencoder=None,
            decoder=TransformerDecoder(len(VOCAB), 16, num_blocks=1),
            ctc=CTC(odim=len(VOCAB), encoder_output_size=16),
            joint_network=None,
            matching_weight=1.0,
        )


# ---------------------------------------------------------------- sos/eos from the decoder
def build_with_symbols(llm_path, decoder_kwargs=None, **model_conf):
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    from espnet_llm_plugin.asr.llm_asr_model import LlmASRModel
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder

    torch.manual_seed(0)
    encoder = TransformerEncoder(
        8, output_size=16, attention_heads=2, linear_units=16, num_blocks=1, input_layer="linear"
    )
    adapter = Conv1dMlpAdapter(input_size=16, output_size=HIDDEN, num_conv_layers=1)
    decoder = LlmDecoder(
        vocab_size=len(VOCAB), encoder_output_size=HIDDEN, llm_path=str(llm_path), lora_r=2, **(decoder_kwargs or {})
    )
    return LlmASRModel(
        vocab_size=len(VOCAB),
        token_list=VOCAB,
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=encoder,
        postencoder=adapter,
        decoder=decoder,
        ctc=CTC(odim=len(VOCAB), encoder_output_size=HIDDEN),
        joint_network=None,
        ctc_weight=0.0,
        report_cer=False,
        report_wer=False,
        **model_conf,
    )


def test_sos_eos_default_to_the_decoders_end_token(tiny_llm):
    """Unset, ESPnet would use '<sos/eos>', absent here, so the last id ('right')."""
    model = build_with_symbols(tiny_llm)
    assert model.sos == model.eos == model.decoder.end_id == VOCAB.index("</s>")
    model = build_with_symbols(tiny_llm, {"text_end": ["yes"]})
    assert model.sos == model.eos == VOCAB.index("yes")
    loss, _, _ = model(**BATCH)  # targets end with "yes": the loss is computed with it
    assert torch.isfinite(loss)


def test_explicit_symbols_must_be_listed_and_the_end_token(tiny_llm):
    with pytest.raises(ValueError, match=r"model_conf\.sym_eos: '<sos/eos>' is not in the token list"):
        build_with_symbols(tiny_llm, sym_eos="<sos/eos>")
    with pytest.raises(
        ValueError, match=r"model_conf\.sym_sos: '<s>' \(id 2\) is not the LLM decoder's end token '</s>'"
    ):
        build_with_symbols(tiny_llm, sym_sos="<s>")
    model = build_with_symbols(tiny_llm, sym_sos="</s>", sym_eos="</s>")
    assert model.sos == model.eos == 3


@pytest.mark.real_model
def test_smollm2_sos_eos_are_the_tokenizers_end_token_not_the_last_id(smollm2_dir):
    """Issue 14.1: with '</s>' (or nothing) ESPnet fell back to id 49151 ('ectable')."""
    from espnet2.asr.ctc import CTC

    from espnet_llm_plugin.asr.llm_asr_model import LlmASRModel
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder

    decoder = LlmDecoder(
        vocab_size=49152,
        encoder_output_size=576,
        llm_path=str(smollm2_dir),
        finetune="frozen",
        prompt="Transcribe the speech.",
    )
    token_list = decoder.tokenizer.convert_ids_to_tokens(list(range(49152)))
    adapter = Conv1dMlpAdapter(input_size=16, output_size=576, num_conv_layers=1)
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    encoder = TransformerEncoder(
        8, output_size=16, attention_heads=2, linear_units=16, num_blocks=1, input_layer="linear"
    )
    model = LlmASRModel(
        vocab_size=49152,
        token_list=token_list,
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=encoder,
        postencoder=adapter,
        decoder=decoder,
        ctc=CTC(odim=49152, encoder_output_size=576),
        joint_network=None,
        ctc_weight=0.0,
        report_cer=False,
        report_wer=False,
    )
    # a real end token of SmolLM2 (whichever is measured best), not ESPnet's fallback id 49151
    assert model.sos == model.eos != 49151
    assert token_list[model.eos] in ("<|im_end|>", "<|endoftext|>")
    assert model.eos == getattr(decoder, "end_id", None)  # the token the decoder's text ends with
    with pytest.raises(ValueError, match=r"model_conf\.sym_sos: '</s>' is not in the token list"):
        LlmASRModel(
            vocab_size=49152,
            token_list=token_list,
            frontend=None,
            specaug=None,
            normalize=None,
            preencoder=None,
            encoder=encoder,
            postencoder=adapter,
            decoder=decoder,
            ctc=CTC(odim=49152, encoder_output_size=576),
            joint_network=None,
            ctc_weight=0.0,
            report_cer=False,
            report_wer=False,
            sym_sos="</s>",
            sym_eos="</s>",
        )
