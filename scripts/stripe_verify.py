#!/usr/bin/env python3
"""Checks a Stripe webhook signature with Stripe's own Python library (PyPI `stripe`), to prove
independently that the server's tests sign deliveries exactly as Stripe does.

Usage: STRIPE_WEBHOOK_SECRET=whsec_... stripe_verify.py '<Stripe-Signature header>' < body

Exit status 0 when stripe.WebhookSignature.verify_header accepts the body read from stdin (raw
bytes, as delivered) with a 300-second tolerance, Stripe's default; 1 when it refuses it (the
reason on stderr); 2 on wrong usage. The secret comes from the environment so it never shows in
a process listing. scripts/test.sh installs the library into a virtual environment and runs the
check from the server's tests (KILN_STRIPE_PYTHON).
"""

import os
import sys

import stripe

TOLERANCE_SECONDS = 300


def main() -> int:
    if len(sys.argv) != 2 or not os.environ.get("STRIPE_WEBHOOK_SECRET"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    payload = sys.stdin.buffer.read()
    try:
        stripe.WebhookSignature.verify_header(
            payload, sys.argv[1], os.environ["STRIPE_WEBHOOK_SECRET"], tolerance=TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as error:
        print(f"stripe {stripe.VERSION} refused the signature: {error.user_message or error}", file=sys.stderr)
        return 1
    print(f"stripe {stripe.VERSION} verified the signature")
    return 0


if __name__ == "__main__":
    sys.exit(main())
