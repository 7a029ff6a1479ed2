from __future__ import annotations

import pytest

from ron_metrics.labels import (
    check_label_key,
    check_label_value,
    prometheus_label_name,
)


class TestLabelValues:
    @pytest.mark.parametrize(
        "value",
        [
            "eu-west-1",
            "az-b",
            "gold",
            "1.4.2",
            "canary",
            "rack_12",
            "Zone A",
            # Long but readable: words between separators are not random tokens.
            "checkout_frontend_canary",
            "kubernetes-cluster-prod-01",
            "payments-service-blue-v2",
            "us-east-2a-prod-cluster-blue",
            "k8s-prod-cluster-eu-west-1-node-pool-b",
            "Checkout-Frontend-Canary-EU",
        ],
    )
    def test_plain_low_cardinality_values_pass(self, value: str) -> None:
        """Ordinary region/tier/version values are accepted."""
        assert check_label_value(value) is None

    @pytest.mark.parametrize(
        ("value", "fragment"),
        [
            ("", "empty"),
            ("x" * 129, "at most"),
            ("tab\there", "printable"),
            ("https://internal.example/path", "URL"),
            ("www.example.com", "URL"),
            ("jane.doe@example.com", "e-mail"),
            ("password=hunter2", "secret"),
            ("Bearer abc", "secret"),
            ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTYifQ.sig", "secret"),
            ("AKIAIOSFODNN7EXAMPLE", "secret"),
            ("ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3", "secret"),
            ("Zk9xQ2hUbE5vV1JtY3pHYTdQeEt1", "random token"),
            ("-----BEGIN RSA PRIVATE KEY-----", "secret"),
            ("-----BEGIN PRIVATE KEY-----MIIEvQ", "secret"),
            ("x" * 128 + "y", "at most"),
            # Separators do not make a token readable.
            ("Zx9-Qw8_Er7-Ty6_Ui5-Op4-As3", "random token"),
            ("9f86-d081-8847-c7d6-59a2-feaa", "random token"),
            ("xkcd-qwrt-zzpf-bcdg-hjkl-mnpq", "random token"),
            ("123e4567-e89b-12d3-a456-426614174000", "random token"),
            ("a1b2c3d4e5f6a7b8c9d0e1f2a3b4", "random token"),
        ],
    )
    def test_risky_values_are_refused_without_echo(
        self, value: str, fragment: str
    ) -> None:
        """Values that are too long, unprintable, or look like PII/secrets are refused."""
        why = check_label_value(value)
        assert why is not None
        assert fragment in why
        if len(value) > 3:
            assert value not in why


class TestRandomTokenRule:
    """
    The rule, as a table: a long (24+), opaque, high-entropy (> 3.5 bits per
    character) value is refused unless it reads as words — every segment between
    '-', '_' or '.' is a word of one case (or capitalised) of at most 12 letters
    with at most a 4-digit suffix, or a lower-case code of at most 4 characters;
    words with fewer than 3 letters or none of 'aeiouy' count as words only when
    they are 1-2 lower-case letters; and at least half the segments are words of
    3+ letters with a vowel.
    """

    @pytest.mark.parametrize(
        "value",
        [
            "kubernetes-x1-production-x2",  # exactly half the segments are words
            "cluster1234-production-eu",  # a 4-digit suffix
            "xz123-production-cluster-blue",  # a 2-letter core needs no vowel
            "kubernetes-cluster01-production",  # words keep their number suffix
            "dev-prod-x1-x2-payments-eu",  # 3-letter words count
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab",  # long and opaque, but low entropy
            "AAAABBBBCCCCDDDDEEFFGGHHIIJJKKLL",  # exactly 3.5 bits: not above
        ],
    )
    def test_must_pass(self, value: str) -> None:
        """Long readable or low-entropy values are accepted."""
        assert check_label_value(value) is None

    @pytest.mark.parametrize(
        "value",
        [
            "cluster12345-production-euw",  # a 5-digit suffix
            "xzq12-production-cluster-blue",  # a 3-letter core without a vowel
            "bcdfg-production-cluster-euw",  # consonant soup
            "kubernetes-x1-x3-production-x2",  # fewer than half are words
        ],
    )
    def test_must_be_refused(self, value: str) -> None:
        """Segments that do not read as words make a long value a token."""
        assert "random token" in str(check_label_value(value))


class TestLabelValueBounds:
    def test_longest_allowed_value_passes(self) -> None:
        """A value of exactly 128 readable characters is accepted; 129 is not."""
        value = ("canary-" * 19)[:128]
        assert len(value) == 128
        assert check_label_value(value) is None
        assert check_label_value(value + "x") is not None


class TestPrometheusLabelNames:
    @pytest.mark.parametrize(
        ("key", "label"),
        [("k8s.pod.name", "k8s_pod_name"), ("region", "region"), ("a_b.c", "a_b_c")],
    )
    def test_dots_become_underscores(self, key: str, label: str) -> None:
        """A dotted resource key renders as a Prometheus label name."""
        assert prometheus_label_name(key) == label


class TestLabelKeys:
    def test_longest_key_passes(self) -> None:
        """A key of exactly 63 characters is accepted; 64 is not."""
        assert check_label_key("k" * 63) is None
        assert check_label_key("k" * 64) is not None

    @pytest.mark.parametrize(
        "key",
        [
            "region",
            "az",
            "tier_2",
            "_x",
            "a.b",
            "deployment.environment.name",
            "k8s.pod.name",
        ],
    )
    def test_good_keys(self, key: str) -> None:
        """Lower-case snake-case keys are accepted."""
        assert check_label_key(key) is None

    @pytest.mark.parametrize(
        "key", ["", "Region", "2az", "a-b", "a..b", ".a", "a.", "A.b", "a b", "k" * 64]
    )
    def test_bad_keys(self, key: str) -> None:
        """Empty, upper-case, punctuated, badly dotted or over-long keys are refused."""
        assert check_label_key(key) is not None
