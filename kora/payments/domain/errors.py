"""Payment errors with stable codes (mapped to HTTP problems in one place, kora/http/problems.py)."""

from __future__ import annotations

from kora.payments.domain.model import PaymentError


class PaymentNotFound(PaymentError):
    code = "payment_not_found"


class RecipientNotFound(PaymentError):
    code = "recipient_not_found"


class WalletNotFound(PaymentError):
    code = "wallet_not_found"


class SameWallet(PaymentError):
    code = "same_wallet"


class WrongCurrency(PaymentError):
    code = "currency_mismatch"


class UnknownProvider(PaymentError):
    code = "unknown_provider"


class InvalidPaymentAmount(PaymentError):
    code = "invalid_amount"


class FundsUnavailable(PaymentError):
    code = "insufficient_funds"
