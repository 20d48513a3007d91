from rest_framework import serializers

from accounts.models import Account, User


class AccountOutputSerializer(serializers.ModelSerializer):
    timeZone = serializers.CharField(source="time_zone")
    createdAt = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Account
        fields = ["id", "name", "timeZone", "createdAt"]


class UserOutputSerializer(serializers.ModelSerializer):
    twoFactorEnabled = serializers.BooleanField(source="two_factor_enabled")
    isActive = serializers.BooleanField(source="is_active")
    createdAt = serializers.DateTimeField(source="date_joined")
    lastLogin = serializers.DateTimeField(source="last_login")
    account = AccountOutputSerializer()

    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "twoFactorEnabled", "isActive", "createdAt", "lastLogin", "account"]


class TeamMemberOutputSerializer(serializers.ModelSerializer):
    isActive = serializers.BooleanField(source="is_active")

    class Meta:
        model = User
        fields = ["id", "email", "name", "role", "isActive"]


class LoginInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class LoginOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    token = serializers.CharField(required=False, help_text="JWT access token (15 minutes).")
    refreshToken = serializers.CharField(required=False, help_text="Refresh token; rotates on each use.")
    requires2FA = serializers.BooleanField(required=False, help_text="True when a TOTP code is needed.")
    tempToken = serializers.CharField(required=False, help_text="Give it to /verify-2fa within 5 minutes.")
    user = UserOutputSerializer(required=False)


class SignupInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(max_length=128, trim_whitespace=False)
    companyName = serializers.CharField(max_length=200, required=False, allow_blank=True)


class ForgotPasswordInputSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)


class ResetPasswordInputSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=300)
    password = serializers.CharField(max_length=128, trim_whitespace=False)


class VerifyTwoFactorInputSerializer(serializers.Serializer):
    tempToken = serializers.CharField(max_length=1000)
    code = serializers.CharField(max_length=10)


class RefreshInputSerializer(serializers.Serializer):
    refreshToken = serializers.CharField(max_length=2000)


class TokenPairOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    token = serializers.CharField()
    refreshToken = serializers.CharField()


class TwoFactorCodeInputSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=10)


class TwoFactorSetupOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    secret = serializers.CharField(help_text="Base32 TOTP secret, for manual entry.")
    provisioningUri = serializers.CharField(help_text="otpauth:// URI to show as a QR code.")


class MeOutputSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always true.")
    user = UserOutputSerializer()
