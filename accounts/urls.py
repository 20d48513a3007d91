from django.urls import path

from accounts import views
from heroshhi.api import api_path

urlpatterns = [
    *api_path("login", views.login_view, "login"),
    *api_path("register", views.register_view, "register"),
    *api_path("logout", views.logout_view, "logout"),
    path("forgot-password", views.forgot_password_view, name="forgot-password"),
    path("reset-password", views.reset_password_view, name="reset-password"),
    path("", views.home_view, name="home"),
]
