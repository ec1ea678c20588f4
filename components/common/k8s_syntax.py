"""The syntax Kubernetes and container registries accept, checked where a value enters (config fields, CLI
flags) instead of where a cluster refuses it. Each rule is `(predicate, what it asks for)`, the shape of a
config's `RULES` entry, so a field declares it beside itself and the generated docs show it.

Sources, as of the versions the project targets:
- DNS-1123 label/subdomain, qualified names and label values: k8s.io/apimachinery
  pkg/util/validation/validation.go (IsDNS1123Label, IsDNS1123Subdomain, IsQualifiedName, IsValidLabelValue).
- Quantities: k8s.io/apimachinery pkg/api/resource/quantity.go (ParseQuantity: a signed decimal number and
  one suffix, binary Ki..Ei, decimal n u m k M G T P E, or an exponent e3).
- Image references: github.com/distribution/reference regexp.go v0.5.0 (domain[:port]/path-components,
  tag `[\\w][\\w.-]{0,127}`, digest `algorithm:hex{32,}`), names at most 255 characters.
"""

from __future__ import annotations

import re

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_LABEL)
_DNS1123_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_NAME_PART = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_QUANTITY = re.compile(r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][-+]?[0-9]+)?")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_IMAGE_NAME = re.compile(rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


def is_dns1123_label(v) -> bool:
    return isinstance(v, str) and len(v) <= 63 and bool(_DNS1123_LABEL.fullmatch(v))


def is_dns1123_subdomain(v) -> bool:
    return isinstance(v, str) and len(v) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(v))


def is_qualified_name(v) -> bool:
    """A label key or extended resource name: an optional DNS-1123 subdomain prefix and '/', then a name."""
    if not isinstance(v, str):
        return False
    prefix, _, name = v.rpartition("/")
    return (not prefix or is_dns1123_subdomain(prefix)) and len(name) <= 63 and bool(_NAME_PART.fullmatch(name))


def is_label_value(v) -> bool:
    return isinstance(v, str) and (v == "" or (len(v) <= 63 and bool(_NAME_PART.fullmatch(v))))


def is_quantity(v) -> bool:
    """A non-negative quantity (a resource request): 32Gi, 500m, 4, 1.5, 2e3."""
    return isinstance(v, str) and bool(_QUANTITY.fullmatch(v))


def is_image_name(v) -> bool:
    """A registry and repository path, e.g. ghcr.io/kubeflow-rlhf or localhost:5000/ml."""
    return isinstance(v, str) and len(v) <= 255 and bool(_IMAGE_NAME.fullmatch(v))


def is_image_tag(v) -> bool:
    return isinstance(v, str) and bool(_TAG.fullmatch(v))


def is_image_digest(v) -> bool:
    return isinstance(v, str) and bool(_DIGEST.fullmatch(v))


# Rules in the shape of a config's RULES entries (and of check() below).
DNS1123_LABEL = (is_dns1123_label, "a DNS-1123 label: at most 63 of a-z, 0-9 and '-', starting and ending alphanumeric")
DNS1123_SUBDOMAIN = (
    is_dns1123_subdomain,
    "a DNS-1123 subdomain: at most 253 of a-z, 0-9, '-' and '.', each part starting and ending alphanumeric",
)
OPTIONAL_DNS1123_SUBDOMAIN = (lambda v: v == "" or is_dns1123_subdomain(v), "empty or " + DNS1123_SUBDOMAIN[1])
QUALIFIED_NAME = (is_qualified_name, "a Kubernetes qualified name such as nvidia.com/gpu ([prefix/]name, name <= 63)")
LABEL_VALUE = (is_label_value, "a Kubernetes label value: at most 63 of A-Z, a-z, 0-9, '-', '_' and '.'")
QUANTITY = (is_quantity, "a Kubernetes quantity such as 32Gi, 500m or 4 (a number and one suffix, no spaces)")
IMAGE_NAME = (is_image_name, "an image registry/repository such as ghcr.io/org or localhost:5000/ml (lower-case path)")
IMAGE_TAG = (is_image_tag, "an image tag: up to 128 of letters, digits, '_', '.' and '-', not starting with '.' or '-'")
IMAGE_DIGEST = (is_image_digest, "an image digest such as sha256:<64 hex digits>")


def check(value, rule, where: str) -> str:
    """`value` if it follows `rule`; else ValueError `<where> <value> is not <what>`, one line."""
    ok, wanted = rule
    if not ok(value):
        raise ValueError(f"{where} {value!r} is not {wanted}")
    return value


def argparse_type(rule):
    """An argparse `type=` that refuses what `rule` refuses, in argparse's own one line."""
    from argparse import ArgumentTypeError

    def parse(text: str) -> str:
        if not rule[0](text):
            raise ArgumentTypeError(f"{text!r} is not {rule[1]}")
        return text

    parse.__name__ = "value"
    return parse
