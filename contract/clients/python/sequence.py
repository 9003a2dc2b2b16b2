"""One call sequence through the Python client generated from the OpenAPI
document: `edge_quota_client` is written by openapi-python-client at test
time (never committed) into a directory on PYTHONPATH.

    python sequence.py BASE_URL TOKEN

Exits non-zero (an uncaught error) at the first answer that differs from
what the document promises.
"""

import re
import sys

from edge_quota_client import AuthenticatedClient, Client
from edge_quota_client.api.nodes import allocate, get_node, put_node
from edge_quota_client.api.usage import consume
from edge_quota_client.models import (
    AllocateBody,
    Consumed,
    ErrorBody,
    ErrorCode,
    Limits,
    LimitsMessages,
    NodeBody,
    PutBody,
    Refused,
    Usage,
    UsageBody,
)


def check(ok: bool, what: str, seen: object) -> None:
    if not ok:
        raise SystemExit(f"{what}; seen: {seen!r}")
    print(f"ok: {what}")


def one_message() -> UsageBody:
    usage = Usage()
    usage["messages"] = 1
    return UsageBody(usage=usage)


def main(base_url: str, token: str) -> None:
    client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

    # A tenant of 3 messages a day, and a team under it of 2.
    tenant = put_node.sync_detailed(
        "py-tenant",
        client=client,
        body=PutBody(limits=Limits(messages=LimitsMessages(max_=3)), name="Python tenant"),
    )
    check(
        tenant.status_code == 201 and isinstance(tenant.parsed, NodeBody) and tenant.parsed.id == "py-tenant",
        "PUT creates the tenant (201)",
        tenant.parsed,
    )
    team = allocate.sync_detailed(
        "py-tenant",
        client=client,
        body=AllocateBody(id="py-team", limits=Limits(messages=LimitsMessages(max_=2))),
    )
    check(
        team.status_code == 201 and isinstance(team.parsed, NodeBody) and team.parsed.parent == "py-tenant",
        "allocate creates the team under it (201)",
        team.parsed,
    )

    # Consume on the team until it refuses.
    allowed = 0
    remaining = []
    refused = None
    retry_after_header = None
    for _ in range(10):
        answer = consume.sync_detailed("py-team", client=client, body=one_message())
        if answer.status_code == 200 and isinstance(answer.parsed, Consumed) and answer.parsed.allowed:
            allowed += 1
            remaining.append(re.sub(r";t=\d+$", "", answer.headers.get("RateLimit", "")))
        elif answer.status_code == 429 and isinstance(answer.parsed, Refused):
            refused = answer.parsed
            retry_after_header = answer.headers.get("Retry-After")
            break
        else:
            raise SystemExit(f"consume answered {answer.status_code}: {answer.content!r}")
    check(allowed == 2, "the team's 2 messages are counted", allowed)
    check(
        remaining == ['"messages";r=1', '"messages";r=0'],
        "RateLimit counts down what is left: r=1, then r=0",
        remaining,
    )
    check(
        refused is not None and refused.reason == ErrorCode.QUOTA_EXHAUSTED and refused.resource == "messages",
        "the third is refused: 429 quota_exhausted on messages",
        refused,
    )
    assert refused is not None
    secs = refused.retry_after_secs
    check(secs is not None and 1 <= secs <= 86_400, "retry_after_secs is within the day", secs)
    check(retry_after_header == str(secs), "Retry-After equals retry_after_secs", retry_after_header)

    # The tenant sees its team's usage.
    read = get_node.sync("py-tenant", client=client)
    check(isinstance(read, NodeBody), "GET reads the tenant", read)
    assert isinstance(read, NodeBody)
    messages = read.resources["messages"]
    check(
        messages.subtree_used == 2 and messages.allocated == 2 and messages.available == 1,
        "the tenant rolls up the team: subtree_used 2, allocated 2, available 1",
        messages,
    )

    # Typed errors: an unknown node, and a caller without a token.
    missing = consume.sync_detailed("py-nobody", client=client, body=one_message())
    check(
        missing.status_code == 404
        and isinstance(missing.parsed, ErrorBody)
        and missing.parsed.error.code == ErrorCode.NODE_NOT_FOUND,
        "an unknown node is 404 node_not_found",
        missing.parsed,
    )
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    denied = get_node.sync_detailed("py-tenant", client=anonymous)
    check(
        denied.status_code == 401
        and isinstance(denied.parsed, ErrorBody)
        and denied.parsed.error.code == ErrorCode.UNAUTHENTICATED,
        "no token is 401 unauthenticated",
        denied.parsed,
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python sequence.py BASE_URL TOKEN")
    main(sys.argv[1], sys.argv[2])
