"""Example client for saring's saring.v1.Screening service.

Run it through run.sh, which installs the packages and generates the stubs:

    bash examples/python/run.sh [HOST:PORT]

It checks the server's health, scores one made-up contact, records the operator's disposition twice (the second is
acknowledged as a duplicate), reads the caller's history back, and shows how a rejected request names the bad
fields in google.rpc.BadRequest details.
"""

import os
import sys
import uuid
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

# The stubs run.sh generates from proto/saring/v1/screening.proto.
sys.path.insert(0, str(Path(__file__).resolve().parent / "generated"))
from saring.v1 import screening_pb2, screening_pb2_grpc  # noqa: E402

# Seconds each call may take.
TIMEOUT_S = 5.0


def auth() -> tuple:
    # Every saring RPC needs a bearer token of a role allowed to call it; this example needs the operator role
    # (score, outcome, caller profile). `saring serve` without configured tokens prints one per role at start-up.
    token = os.environ.get("SARING_TOKEN", "")
    if not token:
        sys.exit("set SARING_TOKEN to an operator token (in development mode saring serve prints one per role on a terminal, else writes them to saring-data/development-tokens)")
    return (("authorization", f"Bearer {token}"),)


def now() -> Timestamp:
    timestamp = Timestamp()
    timestamp.GetCurrentTime()
    return timestamp


def new_contact_id() -> str:
    # The routing engine's ids are unique; a fresh one per run keeps the example repeatable against one server.
    return f"example-{uuid.uuid4().hex[:12]}"


def print_history(history: screening_pb2.HistorySummary, indent: str = "  ") -> None:
    print(f"{indent}contacts  day {history.contacts_day:.3f}  month {history.contacts_month:.3f}")
    print(f"{indent}misuse    day {history.misuse_day:.3f}  month {history.misuse_month:.3f}")
    print(f"{indent}total contacts {history.total_contacts}")
    if history.HasField("first_seen"):
        print(f"{indent}first seen {history.first_seen.ToJsonString()}")
    if history.HasField("last_seen"):
        print(f"{indent}last seen  {history.last_seen.ToJsonString()}")


def check_health(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    answer = health.Check(health_pb2.HealthCheckRequest(service="saring.v1.Screening"), timeout=TIMEOUT_S)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    print(f"health saring.v1.Screening: {status}")
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit("saring is not serving")


def score(screening: screening_pb2_grpc.ScreeningStub, contact: screening_pb2.ContactRequest) -> None:
    reply = screening.ScoreContact(contact, timeout=TIMEOUT_S, metadata=auth())
    print(f"\nScoreContact {reply.contact_id}")
    print(f"  prank likelihood {reply.prank_likelihood:.3f}")
    print(f"  band             {screening_pb2.Band.Name(reply.band)}")
    print(f"  degraded         {reply.degraded}" + (f" ({', '.join(reply.degraded_reasons)})" if reply.degraded else ""))
    print(f"  model            {reply.model_version}")
    print("  reasons (strongest first):")
    for reason in reply.reasons:
        print(f"    {reason.code:<24} {reason.contribution:+.3f}  {reason.sentence}")
    if reply.HasField("caller_history"):
        print("  caller history before this contact:")
        print_history(reply.caller_history, indent="    ")


def record_outcomes(screening: screening_pb2_grpc.ScreeningStub, contact_id: str) -> None:
    # No `contact` embedded: this server scored the contact a moment ago and remembers it. An outcome that may reach
    # another replica, or this one after a restart, should embed the ContactRequest.
    outcome = screening_pb2.Outcome(
        contact_id=contact_id,
        answered=True,
        ring_s=3.0,
        talk_s=4.0,
        disposition=screening_pb2.DISPOSITION_PRANK,
        operator_id="op-7",
    )
    for attempt in ("first", "again"):
        ack = screening.RecordOutcome(outcome, timeout=TIMEOUT_S, metadata=auth())
        print(f"\nRecordOutcome ({attempt}) {ack.contact_id}: duplicate={ack.duplicate}")


def show_caller(screening: screening_pb2_grpc.ScreeningStub, number: str) -> None:
    profile = screening.GetCaller(screening_pb2.CallerQuery(caller=number), timeout=TIMEOUT_S, metadata=auth())
    print(f"\nGetCaller {number!r} -> {profile.caller} (known: {profile.known})")
    print_history(profile.history)
    print("  dispositions, month:")
    for disposition, count in sorted(profile.dispositions_month.items()):
        if count > 0:
            print(f"    {disposition:<20} {count:.3f}")


def show_invalid_argument(screening: screening_pb2_grpc.ScreeningStub) -> None:
    contact = screening_pb2.ContactRequest(
        contact_id=new_contact_id(),
        caller="+1 415 555 0123",
        channel=screening_pb2.CHANNEL_VOICE,
        received_at=now(),
        region="ntt.kupang",
        sim_present=True,
    )
    try:
        screening.ScoreContact(contact, timeout=TIMEOUT_S, metadata=auth())
    except grpc.RpcError as error:
        print(f"\nScoreContact with caller {contact.caller!r} was rejected")
        print(f"  code    {error.code().name}")
        print(f"  message {error.details()}")
        # The details travel in the `grpc-status-details-bin` trailer as a google.rpc.Status.
        status = rpc_status.from_call(error)
        for detail in status.details if status is not None else []:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad_request = error_details_pb2.BadRequest()
                detail.Unpack(bad_request)
                for violation in bad_request.field_violations:
                    print(f"  field violation: {violation.field}: {violation.description}")
        return
    sys.exit("expected INVALID_ARGUMENT for a non-Indonesian number")


def main() -> None:
    address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    with grpc.insecure_channel(address) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=TIMEOUT_S)
        except grpc.FutureTimeoutError:
            sys.exit(f"cannot reach saring at {address}: is `saring serve --listen {address}` running?")
        print(f"connected to {address}")
        check_health(channel)

        screening = screening_pb2_grpc.ScreeningStub(channel)
        contact = screening_pb2.ContactRequest(
            contact_id=new_contact_id(),
            caller="0812-3456-7890",
            channel=screening_pb2.CHANNEL_VOICE,
            received_at=now(),
            region="ntt.kupang",
            sim_present=True,
        )
        score(screening, contact)
        record_outcomes(screening, contact.contact_id)
        show_caller(screening, "+62 812 3456 7890")
        show_invalid_argument(screening)


if __name__ == "__main__":
    main()
