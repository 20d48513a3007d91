from accounts.api import views
from heroshhi.api import api_path

urlpatterns = [
    *api_path("auth/login", views.LoginView.as_view(), "api-auth-login"),
    *api_path("auth/signup", views.SignupView.as_view(), "api-auth-signup"),
    *api_path("auth/forgot-password", views.ForgotPasswordView.as_view(), "api-auth-forgot-password"),
    *api_path("auth/reset-password", views.ResetPasswordView.as_view(), "api-auth-reset-password"),
    *api_path("auth/verify-2fa", views.VerifyTwoFactorView.as_view(), "api-auth-verify-2fa"),
    *api_path("auth/refresh", views.RefreshView.as_view(), "api-auth-refresh"),
    *api_path("auth/logout", views.LogoutView.as_view(), "api-auth-logout"),
    *api_path("auth/me", views.MeView.as_view(), "api-auth-me"),
    *api_path("auth/2fa/setup", views.TwoFactorSetupView.as_view(), "api-auth-2fa-setup"),
    *api_path("auth/2fa/enable", views.TwoFactorEnableView.as_view(), "api-auth-2fa-enable"),
    *api_path("auth/2fa/disable", views.TwoFactorDisableView.as_view(), "api-auth-2fa-disable"),
    *api_path("users", views.TeamListView.as_view(), "api-users"),
]
