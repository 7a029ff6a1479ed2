from __future__ import annotations

import pytest

from ron_metrics.labels import check_label_key, check_label_value


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


class TestLabelValueBounds:
    def test_longest_allowed_value_passes(self) -> None:
        """A value of exactly 128 readable characters is accepted; 129 is not."""
        value = ("canary-" * 19)[:128]
        assert len(value) == 128
        assert check_label_value(value) is None
        assert check_label_value(value + "x") is not None


class TestLabelKeys:
    @pytest.mark.parametrize("key", ["region", "az", "tier_2", "_x"])
    def test_good_keys(self, key: str) -> None:
        """Lower-case snake-case keys are accepted."""
        assert check_label_key(key) is None

    @pytest.mark.parametrize("key", ["", "Region", "2az", "a-b", "a.b", "k" * 64])
    def test_bad_keys(self, key: str) -> None:
        """Empty, upper-case, punctuated or over-long keys are refused."""
        assert check_label_key(key) is not None
