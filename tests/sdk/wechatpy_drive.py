"""Drives the counting proxy with wechatpy, the way an application would.

Usage: python wechatpy_drive.py PROXY_URL APPID SECRET
Prints one JSON object with what each step saw (never a token or secret).
"""
import io
import json
import sys

from wechatpy import WeChatClient
from wechatpy.exceptions import WeChatClientException

proxy, appid, secret = sys.argv[1:4]


class ProxiedClient(WeChatClient):
    # The setting the README documents: every API call goes to the proxy.
    API_BASE_URL = proxy + "/cgi-bin/"

    # wechatpy's token URL is fixed to api.weixin.qq.com; point it at the proxy's
    # token server too, so application servers share the daemon's one token.
    def fetch_access_token(self):
        return self._fetch_access_token(
            url=self.API_BASE_URL + "token",
            params={"grant_type": "client_credential", "appid": self.appid, "secret": self.secret},
        )


out = {}
client = ProxiedClient(appid, secret)
out["send"] = client.message.send_text("OPENID", "hello from wechatpy")["errcode"]
# The harness put /cgi-bin/user/get at its daily limit: WeChat answers 45009, the
# daemon clears, the proxy sends the call once more; wechatpy never sees the 45009.
try:
    out["user_get"] = client.user.get_followers().get("errcode", 0)
except WeChatClientException as e:
    out["user_get"] = e.errcode
data = bytes(range(256)) * 4096 + b"\x00\xff tail"
uploaded = client.media.upload("image", ("pic.jpg", io.BytesIO(data), "image/jpeg"))
downloaded = client.media.download(uploaded["media_id"])
out["download_same"] = downloaded.content == data
out["download_type"] = downloaded.headers.get("content-type")
try:
    ProxiedClient(appid, "wrong-secret").fetch_access_token()
    out["wrong_secret"] = 0
except WeChatClientException as e:
    out["wrong_secret"] = e.errcode
print(json.dumps(out))
