"""The payments module's public interface: the payment lifecycle and its use cases."""

from kora.payments.domain.errors import (
    FundsUnavailable,
    InvalidPaymentAmount,
    PaymentNotFound,
    RecipientNotFound,
    SameWallet,
    UnknownProvider,
    WalletNotFound,
    WrongCurrency,
)
from kora.payments.domain.idempotency import (
    IdempotencyKeyInvalid,
    IdempotencyKeyMissing,
    IdempotencyKeyReused,
    IdempotencyRequestInProgress,
    Outcome,
)
from kora.payments.domain.model import (
    IllegalTransition,
    InvalidCapture,
    InvalidFee,
    Payment,
    PaymentError,
    PaymentStatus,
    PaymentType,
    RefundNotAllowed,
)
from kora.payments.service import (
    PaymentResult,
    PaymentsConfig,
    PaymentsService,
    ProviderMoveCommand,
    TransferCommand,
)

__all__ = [
    "FundsUnavailable",
    "IdempotencyKeyInvalid",
    "IdempotencyKeyMissing",
    "IdempotencyKeyReused",
    "IdempotencyRequestInProgress",
    "IllegalTransition",
    "InvalidCapture",
    "InvalidFee",
    "InvalidPaymentAmount",
    "Outcome",
    "Payment",
    "PaymentError",
    "PaymentNotFound",
    "PaymentResult",
    "PaymentStatus",
    "PaymentType",
    "PaymentsConfig",
    "PaymentsService",
    "ProviderMoveCommand",
    "RecipientNotFound",
    "RefundNotAllowed",
    "SameWallet",
    "TransferCommand",
    "UnknownProvider",
    "WalletNotFound",
    "WrongCurrency",
]
