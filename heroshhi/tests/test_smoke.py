def test_login_and_me(api_client, owner, password):
    r = api_client.post("/api/auth/login", {"email": owner.email, "password": password}, format="json")
    assert r.status_code == 200, r.content
    token = r.json()["token"]
    me = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert me.json()["user"]["email"] == owner.email
