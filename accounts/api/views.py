"""Heroshhi auth API (/api/auth/…): JWT login with optional TOTP step, sign-up,
password reset, token refresh and logout, profile, 2FA enrolment."""

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.api import serializers as s
from heroshhi.api import SuccessSerializer, error_responses
from heroshhi.ratelimit import AuthRateThrottle, StandardRateThrottle


class _PublicAuthView(APIView):
    """Unauthenticated auth steps: no session (so no CSRF), counted per IP."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    throttle_classes = (AuthRateThrottle,)

    def validated(self, serializer_class) -> dict:
        serializer = serializer_class(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def _token_body(tokens: services.TokenPair, user=None) -> dict:
    body = {"success": True, "token": tokens.access, "refreshToken": tokens.refresh}
    if user is not None:
        body["user"] = s.UserOutputSerializer(user).data
    return body


class LoginView(_PublicAuthView):
    @extend_schema(
        tags=["auth"],
        summary="Log in with email and password",
        description="Answers the JWT, or `{success, requires2FA: true, tempToken}` when the user has 2FA on.",
        request=s.LoginInputSerializer,
        responses={200: s.LoginOutputSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = self.validated(s.LoginInputSerializer)
        outcome = services.auth_login(email=data["email"], password=data["password"], request=request)
        if outcome.two_factor_token:
            return Response({"success": True, "requires2FA": True, "tempToken": outcome.two_factor_token})
        return Response(_token_body(outcome.tokens, outcome.user))


class VerifyTwoFactorView(_PublicAuthView):
    @extend_schema(
        tags=["auth"],
        summary="Complete a 2FA login with a TOTP code",
        request=s.VerifyTwoFactorInputSerializer,
        responses={200: s.LoginOutputSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        data = self.validated(s.VerifyTwoFactorInputSerializer)
        outcome = services.auth_verify_two_factor(temp_token=data["tempToken"], code=data["code"])
        return Response(_token_body(outcome.tokens, outcome.user))


class SignupView(_PublicAuthView):
    @extend_schema(
        tags=["auth"],
        summary="Create a workspace and its admin user",
        request=s.SignupInputSerializer,
        responses={201: s.LoginOutputSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = self.validated(s.SignupInputSerializer)
        user = services.account_signup(
            name=data["name"],
            email=data["email"],
            password=data["password"],
            company_name=data.get("companyName", ""),
        )
        tokens = services.auth_issue_tokens(user=user)
        return Response(_token_body(tokens, user), status=status.HTTP_201_CREATED)


class ForgotPasswordView(_PublicAuthView):
    @extend_schema(
        tags=["auth"],
        summary="Email a password-reset link",
        description="Answers the same whether or not the email belongs to a user.",
        request=s.ForgotPasswordInputSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = self.validated(s.ForgotPasswordInputSerializer)
        services.password_reset_request(email=data["email"])
        return Response(
            {"success": True, "message": "If an account exists for this email, a reset link has been sent."}
        )


class ResetPasswordView(_PublicAuthView):
    @extend_schema(
        tags=["auth"],
        summary="Set a new password with the emailed token",
        description="The token works once and expires (PASSWORD_RESET_TIMEOUT). Every refresh token "
        "of the user is revoked.",
        request=s.ResetPasswordInputSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = self.validated(s.ResetPasswordInputSerializer)
        services.password_reset_confirm(token=data["token"], password=data["password"])
        return Response({"success": True, "message": "Your password has been reset. You can log in now."})


class RefreshView(_PublicAuthView):
    # Token holders, not password guessers: a refresh token can't be guessed.
    throttle_classes = (StandardRateThrottle,)

    @extend_schema(
        tags=["auth"],
        summary="Exchange a refresh token for a new token pair",
        description="The refresh token rotates: the one sent is refused from now on.",
        request=s.RefreshInputSerializer,
        responses={200: s.TokenPairOutputSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = self.validated(s.RefreshInputSerializer)
        return Response(_token_body(services.auth_refresh(refresh=data["refreshToken"])))


class LogoutView(_PublicAuthView):
    throttle_classes = (StandardRateThrottle,)

    @extend_schema(
        tags=["auth"],
        summary="Revoke a refresh token",
        description="The access token stays valid until it expires (15 minutes at most).",
        request=s.RefreshInputSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 429)},
    )
    def post(self, request):
        data = self.validated(s.RefreshInputSerializer)
        services.auth_logout(refresh=data["refreshToken"])
        return Response({"success": True, "message": "Logged out."})


class MeView(APIView):
    @extend_schema(
        tags=["auth"],
        summary="The current user, with account and role",
        responses={200: s.MeOutputSerializer, **error_responses(401, 429)},
    )
    def get(self, request):
        return Response({"success": True, "user": s.UserOutputSerializer(request.user).data})


class _TwoFactorCodeView(APIView):
    # A code guesser is limited like a password guesser.
    throttle_classes = (StandardRateThrottle, AuthRateThrottle)

    def code(self) -> str:
        serializer = s.TwoFactorCodeInputSerializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["code"]


class TwoFactorSetupView(APIView):
    @extend_schema(
        tags=["auth"],
        summary="Start 2FA enrolment",
        description="Creates a new TOTP secret; 2FA is on once `/2fa/enable` confirms a code from it.",
        request=None,
        responses={200: s.TwoFactorSetupOutputSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        setup = services.two_factor_setup(user=request.user)
        return Response({"success": True, "secret": setup.secret, "provisioningUri": setup.provisioning_uri})


class TwoFactorEnableView(_TwoFactorCodeView):
    @extend_schema(
        tags=["auth"],
        summary="Turn 2FA on with a code from the new secret",
        request=s.TwoFactorCodeInputSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        services.two_factor_enable(user=request.user, code=self.code())
        return Response({"success": True, "message": "Two-factor authentication is on."})


class TwoFactorDisableView(_TwoFactorCodeView):
    @extend_schema(
        tags=["auth"],
        summary="Turn 2FA off with a current code",
        request=s.TwoFactorCodeInputSerializer,
        responses={200: SuccessSerializer, **error_responses(400, 401, 429)},
    )
    def post(self, request):
        services.two_factor_disable(user=request.user, code=self.code())
        return Response({"success": True, "message": "Two-factor authentication is off."})


@extend_schema(
    tags=["team"],
    summary="The users of the account (to pick an assignee)",
    responses={200: s.TeamMemberOutputSerializer(many=True), **error_responses(400, 401, 429)},
)
class TeamListView(ListAPIView):
    serializer_class = s.TeamMemberOutputSerializer

    def get_queryset(self):
        return selectors.user_list_for_account(user=self.request.user)
