"""Writes and rules of accounts and authentication.

Called alike by the Heroshhi JWT API, HeyDoc's session routes, the HTML forms and
the admin: a rule (password strength, 2FA, single-use reset tokens) lives here once.
"""

from dataclasses import dataclass

import pyotp
from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import Account, User
from heroshhi.errors import (
    DomainError,
    InvalidCredentials,
    InvalidToken,
    InvalidTwoFactorCode,
    NotFound,
    PermissionDenied,
    ValidationFailed,
)
from heroshhi.text import clean_text

TWO_FACTOR_TOKEN_SALT = "heroshhi.accounts.two-factor-pending"  # noqa: S105 (a signing salt, not a secret)
TWO_FACTOR_TOKEN_MAX_AGE = 5 * 60
TOTP_ISSUER = "Heroshhi"


class TwoFactorRequired(DomainError):
    status_code = 401
    code = "TWO_FACTOR_REQUIRED"
    default_message = "Enter the code from your authenticator app."


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str


@dataclass(frozen=True)
class LoginOutcome:
    user: User
    tokens: TokenPair | None = None
    two_factor_token: str | None = None


def _normalize_email(email: str) -> str:
    return User.objects.normalize_email(email.strip()).lower()


def _check_password_strength(password: str, user: User | None = None) -> None:
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationFailed(exc.messages[0], errors={"password": exc.messages}) from None


# --- Sign-up -----------------------------------------------------------------------


@transaction.atomic
def account_signup(*, name: str, email: str, password: str, company_name: str = "") -> User:
    """Creates a workspace and its first admin."""
    email = _normalize_email(email)
    name = clean_text(name)
    company_name = clean_text(company_name) or (f"{name}'s workspace" if name else email.split("@")[0])
    if User.objects.filter(email=email).exists():
        raise ValidationFailed(
            "An account with this email already exists.",
            errors={"email": ["An account with this email already exists."]},
        )
    account = Account.objects.create(name=company_name[:200])
    user = User(account=account, email=email, name=name[:150], role=User.Role.ADMIN)
    _check_password_strength(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same email signed up a moment ago
        raise ValidationFailed(
            "An account with this email already exists.",
            errors={"email": ["An account with this email already exists."]},
        ) from None
    return user


# --- Login, tokens, 2FA ------------------------------------------------------------


def user_check_credentials(*, email: str, password: str, request=None) -> User:
    user = authenticate(request, username=_normalize_email(email), password=password)
    if user is None:
        raise InvalidCredentials()
    return user


def auth_issue_tokens(*, user: User) -> TokenPair:
    refresh = RefreshToken.for_user(user)
    User.objects.filter(pk=user.pk).update(last_login=timezone.now())
    return TokenPair(access=str(refresh.access_token), refresh=str(refresh))


def auth_login(*, email: str, password: str, request=None) -> LoginOutcome:
    """Password step of the JWT login: tokens, or a pending step when 2FA is on."""
    user = user_check_credentials(email=email, password=password, request=request)
    if user.two_factor_enabled:
        token = signing.dumps({"uid": str(user.pk)}, salt=TWO_FACTOR_TOKEN_SALT)
        return LoginOutcome(user=user, two_factor_token=token)
    return LoginOutcome(user=user, tokens=auth_issue_tokens(user=user))


def auth_verify_two_factor(*, temp_token: str, code: str) -> LoginOutcome:
    """Second step of the JWT login when 2FA is on."""
    try:
        payload = signing.loads(temp_token, salt=TWO_FACTOR_TOKEN_SALT, max_age=TWO_FACTOR_TOKEN_MAX_AGE)
    except signing.BadSignature:
        raise InvalidToken("The login step has expired or is invalid. Log in again.") from None
    user = User.objects.filter(pk=payload.get("uid"), is_active=True, two_factor_enabled=True).first()
    if user is None:
        raise InvalidToken("The login step has expired or is invalid. Log in again.")
    totp_consume(user=user, code=code)
    return LoginOutcome(user=user, tokens=auth_issue_tokens(user=user))


def session_check_login(*, email: str, password: str, code: str = "", request=None) -> User:
    """Password (and, when 2FA is on, TOTP code) check for the session login."""
    user = user_check_credentials(email=email, password=password, request=request)
    if user.two_factor_enabled:
        if not code:
            raise TwoFactorRequired()
        totp_consume(user=user, code=code)
    return user


def auth_refresh(*, refresh: str) -> TokenPair:
    """Rotates a refresh token: the old one is blacklisted and refused from now on."""
    try:
        old = RefreshToken(refresh)
        user = User.objects.filter(pk=old["user_id"], is_active=True).first()
        if user is None:
            raise InvalidToken()
        old.blacklist()
    except TokenError:
        raise InvalidToken() from None
    return auth_issue_tokens(user=user)


def auth_logout(*, refresh: str) -> None:
    try:
        RefreshToken(refresh).blacklist()
    except TokenError:
        raise InvalidToken() from None


def auth_revoke_all_refresh_tokens(*, user: User) -> int:
    """Blacklists every refresh token of the user (after a password reset)."""
    outstanding = OutstandingToken.objects.filter(user=user).exclude(blacklistedtoken__isnull=False)
    tokens = [BlacklistedToken(token=token) for token in outstanding]
    BlacklistedToken.objects.bulk_create(tokens, ignore_conflicts=True)
    return len(tokens)


def totp_consume(*, user: User, code: str) -> None:
    """Accepts a TOTP code once: the time step is recorded with a conditional update,
    so the same code can't log in twice, even from two requests at once."""
    code = (code or "").strip().replace(" ", "")
    if not user.totp_secret or not code.isdigit() or len(code) != 6:
        raise InvalidTwoFactorCode()
    totp = pyotp.TOTP(user.totp_secret)
    now = timezone.now()
    for drift in (0, -1, 1):  # one step of clock drift either way
        at = now.timestamp() + drift * totp.interval
        if totp.verify(code, for_time=at):
            counter = int(at // totp.interval)
            claimed = (
                User.objects.filter(pk=user.pk)
                .exclude(totp_last_counter__gte=counter)
                .update(totp_last_counter=counter)
            )
            if not claimed:
                raise InvalidTwoFactorCode("This code was already used. Wait for the next one.")
            user.totp_last_counter = counter
            return
    raise InvalidTwoFactorCode()


@dataclass(frozen=True)
class TwoFactorSetup:
    secret: str
    provisioning_uri: str


def two_factor_setup(*, user: User) -> TwoFactorSetup:
    """Starts enrolment: a new secret, effective once ``two_factor_enable`` confirms a code."""
    if user.two_factor_enabled:
        raise ValidationFailed("Two-factor authentication is already on. Disable it first.")
    secret = pyotp.random_base32()
    user.totp_secret = secret
    user.totp_last_counter = None
    user.save(update_fields=["totp_secret", "totp_last_counter"])
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=TOTP_ISSUER)
    return TwoFactorSetup(secret=secret, provisioning_uri=uri)


def two_factor_enable(*, user: User, code: str) -> None:
    if user.two_factor_enabled:
        raise ValidationFailed("Two-factor authentication is already on.")
    if not user.totp_secret:
        raise ValidationFailed("Start the setup first to get a secret.")
    totp_consume(user=user, code=code)
    User.objects.filter(pk=user.pk).update(two_factor_enabled=True)
    user.two_factor_enabled = True


def two_factor_disable(*, user: User, code: str) -> None:
    if not user.two_factor_enabled:
        raise ValidationFailed("Two-factor authentication is not on.")
    totp_consume(user=user, code=code)
    User.objects.filter(pk=user.pk).update(two_factor_enabled=False, totp_secret="", totp_last_counter=None)
    user.two_factor_enabled = False
    user.totp_secret = ""


# --- Password reset ----------------------------------------------------------------


def password_reset_token(*, user: User) -> str:
    """``<user id>.<token>``: Django's token hashes the password and last login, so it
    stops working once used, and expires after PASSWORD_RESET_TIMEOUT."""
    return f"{urlsafe_base64_encode(force_bytes(user.pk))}.{default_token_generator.make_token(user)}"


def password_reset_request(*, email: str) -> None:
    """Emails a reset link when the address belongs to an active user; does nothing
    otherwise. The caller answers the same either way."""
    user = User.objects.filter(email=_normalize_email(email), is_active=True).first()
    if user is None or not user.has_usable_password():
        return
    token = password_reset_token(user=user)
    link = f"{settings.PUBLIC_BASE_URL}/reset-password?token={token}"
    minutes = settings.PASSWORD_RESET_TIMEOUT // 60
    send_mail(
        subject="Reset your Heroshhi password",
        message=(
            f"Hello {user.name or user.email},\n\n"
            f"Someone asked to reset the password of your Heroshhi account. To choose a new one, open:\n\n"
            f"{link}\n\n"
            f"Or send this token to POST /api/auth/reset-password:\n{token}\n\n"
            f"The link works once and expires in {minutes} minutes. If you did not ask for it, ignore this email.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )


def _user_from_reset_token(token: str) -> User:
    uid_part, _, token_part = (token or "").strip().partition(".")
    try:
        user_id = force_str(urlsafe_base64_decode(uid_part))
        user = User.objects.get(pk=user_id, is_active=True)
    except (ValueError, TypeError, ValidationError, User.DoesNotExist):
        raise InvalidToken("The reset link is invalid or has expired.") from None
    if not default_token_generator.check_token(user, token_part):
        raise InvalidToken("The reset link is invalid or has expired.")
    return user


@transaction.atomic
def password_reset_confirm(*, token: str, password: str) -> User:
    user = _user_from_reset_token(token)
    # Lock the row so two requests with the same token can't both succeed.
    user = User.objects.select_for_update().get(pk=user.pk)
    if not default_token_generator.check_token(user, token.partition(".")[2]):
        raise InvalidToken("The reset link is invalid or has expired.")
    _check_password_strength(password, user)
    user.set_password(password)
    user.save(update_fields=["password"])
    auth_revoke_all_refresh_tokens(user=user)
    return user


# --- Team (admins manage the account's users) --------------------------------------


def _require_admin(actor: User) -> None:
    if not actor.is_account_admin:
        raise PermissionDenied("Only account admins can manage the team.")


def _check_role(role: str) -> None:
    if role not in User.Role.values:
        allowed = ", ".join(User.Role.values)
        raise ValidationFailed(f"Role must be one of: {allowed}.", errors={"role": [f"Choose one of: {allowed}."]})


def _last_active_admin(user: User) -> bool:
    """Whether ``user`` is the account's only active admin. Locks the admins' rows so two
    admins demoting each other at the same moment can't both succeed."""
    admins = User.objects.select_for_update().filter(account_id=user.account_id, role=User.Role.ADMIN, is_active=True)
    return list(admins.values_list("pk", flat=True)) == [user.pk]


@transaction.atomic
def user_create(*, actor: User, email: str, name: str, role: str, password: str) -> User:
    """A new user in the actor's account, with an initial password the admin hands over
    (they can change it later with the password-reset flow)."""
    _require_admin(actor)
    _check_role(role)
    email = _normalize_email(email or "")
    name = clean_text(name or "")[:150]
    try:
        validate_email(email)
    except ValidationError:
        raise ValidationFailed(
            "Enter a valid email address.", errors={"email": ["Enter a valid email address."]}
        ) from None
    taken = ValidationFailed(
        "A user with this email already exists.", errors={"email": ["A user with this email already exists."]}
    )
    if User.objects.filter(email=email).exists():
        raise taken
    user = User(account_id=actor.account_id, email=email, name=name, role=role)
    _check_password_strength(password or "", user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # the same email added a moment ago
        raise taken from None
    return user


@transaction.atomic
def user_set_role(*, actor: User, user: User, role: str) -> User:
    """Changes a teammate's role; never one's own, never the last active admin's."""
    _require_admin(actor)
    _check_role(role)
    if user.account_id != actor.account_id:
        raise NotFound("User not found.")
    if user.pk == actor.pk:
        raise ValidationFailed(
            "You cannot change your own role.", errors={"role": ["You cannot change your own role."]}
        )
    if role != User.Role.ADMIN and user.role == User.Role.ADMIN and _last_active_admin(user):
        raise ValidationFailed(
            "The account needs at least one active admin.",
            errors={"role": ["The account needs at least one active admin."]},
        )
    user.role = role
    user.save(update_fields=["role"])
    return user


@transaction.atomic
def user_set_active(*, actor: User, user: User, is_active: bool) -> User:
    """Deactivates (can no longer log in; API tokens revoked; their leads stay assigned)
    or reactivates a teammate; never oneself, never the last active admin."""
    _require_admin(actor)
    if user.account_id != actor.account_id:
        raise NotFound("User not found.")
    if user.pk == actor.pk:
        raise ValidationFailed("You cannot deactivate yourself.")
    if not is_active and user.role == User.Role.ADMIN and _last_active_admin(user):
        raise ValidationFailed("The account needs at least one active admin.")
    user.is_active = is_active
    user.save(update_fields=["is_active"])
    if not is_active:
        auth_revoke_all_refresh_tokens(user=user)
    return user
