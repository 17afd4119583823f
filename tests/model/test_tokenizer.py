import pytest

from nsllm.model.tokenizer import ByteTokenizer, HFTokenizer, load_tokenizer


def test_byte_round_trip_and_streaming():
    tok = ByteTokenizer()
    text = "spikes → ∑ Ω ok"
    ids = tok.encode(text)
    assert ids == list(text.encode())
    assert tok.decode(ids) == text
    feed = tok.stream_decoder()
    pieces = [feed(i) for i in ids]
    assert "".join(pieces) == text
    assert "" in pieces  # a multi-byte character appears only once it is complete


def _tiny_hf_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders

    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the spikes fire and the weights stream"] * 20, trainer)
    tok.save(str(path))


def test_hf_tokenizer_from_model_folder(tmp_path):
    _tiny_hf_tokenizer(tmp_path / "tokenizer.json")
    tok = load_tokenizer("hf", tmp_path / "model.nsllm")
    assert isinstance(tok, HFTokenizer)
    ids = tok.encode("the spikes stream")
    assert tok.decode(ids) == "the spikes stream"
    feed = tok.stream_decoder()
    assert "".join(feed(i) for i in ids) == "the spikes stream"


def test_missing_hf_tokenizer_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="put the checkpoint's tokenizer.json next to"):
        load_tokenizer("hf", tmp_path / "model.nsllm")
