import pytest

from unisemi.config import ConfigError, config_hash, load_config


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_preset_loads_and_overrides_apply():
    cfg = load_config("supervised_city", ["train.iterations=7", "data.domains=[city, town]"])
    assert cfg.train.iterations == 7
    assert cfg.data.domains == ("city", "town")
    assert cfg.method == "supervised"


def test_base_preset_is_merged_under_file(tmp_path):
    path = write(tmp_path, "base: supervised_city\ntrain: {iterations: 3}\n")
    cfg = load_config(path)
    assert cfg.train.iterations == 3 and cfg.data.n_labelled == 100


def test_unknown_key_names_file_key_and_nearest(tmp_path):
    path = write(tmp_path, "train: {iteratons: 3}\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'train.iteratons' \(did you mean 'train.iterations'\?\)"):
        load_config(path)


def test_unknown_override_key():
    with pytest.raises(ConfigError, match="unknown key 'optim.lrr'.*'optim.lr'"):
        load_config(None, ["optim.lrr=0.1"])


def test_wrong_type_names_key_and_value():
    with pytest.raises(ConfigError, match="key 'train.iterations': expected int, got str 'many'"):
        load_config(None, ["train.iterations=many"])


def test_negative_n_and_unknown_domain():
    with pytest.raises(ConfigError, match="'data.n_labelled': -5 is not valid"):
        load_config(None, ["data.n_labelled=-5"])
    with pytest.raises(ConfigError, match="'data.domains': 'mars' is not valid, expected one of .*city"):
        load_config(None, ["data.domains=[mars]"])


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: config file not found"):
        load_config(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="config 'supervised_cty': no such file or preset.*supervised_city"):
        load_config("supervised_cty")


def test_bad_yaml_and_non_mapping(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: {iterations: [1,\n"))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_config_hash_tracks_values():
    a = load_config(None, ["train.iterations=5"])
    b = load_config(None, ["train.iterations=5"])
    c = load_config(None, ["train.iterations=6"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_keys_of_another_methods_section_are_found():
    from unisemi.config import foreign_method_keys
    values = {"contrastive": {"lambda_contr": 1.0}, "universal": {"gamma": 0.5}, "train": {"seed": 1}}
    assert foreign_method_keys(values, "universal") == ["contrastive.lambda_contr"]
    assert foreign_method_keys(values, "supervised") == ["contrastive.lambda_contr", "universal.gamma"]
    assert foreign_method_keys({"train": {"iterations": 3}}, "contrastive") == []


def test_a_float_written_without_a_dot_is_read_by_the_fields_type():
    # YAML 1.1 reads 1e6 as the string '1e6'; the field says float
    cfg = load_config("supervised_city", ["optim.lr=1e6", "train.iterations=1e3"])
    assert cfg.optim.lr == 1e6 and isinstance(cfg.optim.lr, float)
    assert cfg.train.iterations == 1000 and isinstance(cfg.train.iterations, int)
    with pytest.raises(ConfigError, match="key 'train.iterations': expected int, got str '2.5e0'"):
        load_config("supervised_city", ["train.iterations=2.5e0"])
    with pytest.raises(ConfigError, match=r"key 'optim.lr': expected float, got str 'fast'"):
        load_config("supervised_city", ["optim.lr=fast"])


def test_yaml_errors_name_file_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  iterations: [1, 2\n  eval_every: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(bad))
    msg = str(err.value)
    assert msg.startswith(f"{bad}: not valid YAML (line ") and ", column " in msg and "\n" not in msg
    with pytest.raises(ConfigError, match=r"--set 'data.size=\[1,': the value is not valid YAML"):
        load_config("supervised_city", ["data.size=[1,"])
