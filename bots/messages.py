"""Every line the bots say, in English and Chinese, shared by the Telegram and Discord adapters.

The catalog's markup is Discord's markdown, which Discord shows as it is: `code` and **bold**.
Telegram gets the same lines as HTML (`to_html`), everything in them escaped first.
"""

from __future__ import annotations

import html
import re
import time
from datetime import datetime
from typing import Any

from core.errors import RetouchError
from core.preferences import Language, language_code
from core.quota import QuotaStatus, zone
from core.store import PurchaseTotals, Stats

Lang = Language

_EN: dict[str, str] = {
    "start": (
        "Hi! Send me a portrait photo and I'll retouch it.\n"
        "Add a caption like `fidelity 0.3` to choose the strength "
        "(lower is stronger, 0 to 1). /help shows more."
    ),
    "help": (
        "Send a portrait photo (or an image as a file) and I'll send it back retouched.\n\n"
        "Strength: add a caption with a fidelity from 0 to 1 — lower retouches more, "
        "1 keeps the photo nearly as it is. 0.1 is a clear retouch (the default), "
        "0.3 a moderate one, 0.5 and 0.7 a light touch.\n"
        "Examples: `fidelity 0.3`, `f=0.5`, `0.3`, `30%`, `保真度 0.3`.\n\n"
        "In groups, caption the photo with /retouch or mention me, or reply to a photo with "
        "`/retouch 0.3`. Group admins choose how I behave there with /settings.\n\n"
        "/quota — your photos left today\n"
        "/fidelity 0.3 — save your default strength (/fidelity alone shows it)\n"
        "/language — English or 中文\n"
        "/whoami — your id, for the bot's operator\n"
        "/forget — delete what I keep about you"
    ),
    "help_buy": "\n/buy — buy extra photos with Telegram Stars (/terms, /paysupport)",
    "received": "Got it, preparing your photo…",
    "queued": "Queued, #{position} in line…",
    "running": "Retouching…",
    "delivering": "Uploading the result…",
    "done_caption": "Retouched · fidelity {fidelity:g}{left}",
    "left_today": " · {left} left today",
    "cancelled": "Cancelled. This photo didn't count against your quota.",
    "failed": (
        "Sorry, I couldn't retouch that photo: {reason} It didn't count against your quota."
    ),
    "send_a_photo": (
        "Please send a photo (or an image as a file) — I can only retouch still images."
    ),
    "not_an_image_file": (
        "That file isn't an image I can retouch. Please send a JPEG, PNG, WebP or HEIC photo."
    ),
    "file_too_big": "That file is too large ({size} MB); please send one under {limit} MB.",
    "reply_to_photo": "Reply to a message with a photo and write /retouch (optionally 0.3).",
    "fidelity_saved": "Saved: your photos will use fidelity {fidelity:g} unless you say otherwise.",
    "fidelity_cleared": "Cleared: your photos will use the default fidelity {fidelity:g}.",
    "fidelity_show": "Your default fidelity is {fidelity:g}{source}. Change it with /fidelity 0.3",
    "fidelity_source_default": " (the bot's default)",
    "quota": "Today you've used {used} of {limit}; {left} left{credits}. Resets {reset}.",
    "quota_unlimited": "You have no daily limit. Used today: {used}.",
    "quota_credits": " (plus {credits} extra credits)",
    "quota_bought": " You bought {credits} photos with Stars ({count} purchases).",
    "forget_confirm": (
        "Delete your saved settings and job history? Photos in progress are cancelled. "
        "(Today's usage count stays.)"
    ),
    "forget_yes": "Yes, delete",
    "forget_no": "Keep",
    "forget_done": "Done: I deleted your settings and history ({jobs} jobs).",
    "forget_kept": "Nothing was deleted.",
    "admin_only": "That command is for the bot's admins.",
    "stats": (
        "Today ({day}): {jobs} jobs from {users} users.\nBy state: {states}\n"
        "By platform: {platforms}\nQueue: {queued} waiting, {running} running."
    ),
    "stats_purchases": (
        "\nStars today: {count} purchases, {credits} photos, {amount} ⭐ ({refunded} refunded)."
    ),
    "grant_usage": "Usage: /grant <user> <n> — e.g. /grant 123456 5 or /grant discord:42 5",
    "grant_done": "{user} now has {credits} extra credits.",
    "redo": "Redo {fidelity:g}",
    "cancel": "Cancel",
    "not_yours": "Only the person who sent the photo can use these buttons.",
    "anonymous_sender": (
        "You are posting as the group (or a channel), so I can't tell who you are: quotas and "
        "buttons belong to people. Turn off “Remain anonymous” in your admin rights, or send "
        "the photo to me in a private chat."
    ),
    "job_gone": "That photo is no longer available — please send it again.",
    "too_late": "Too late to cancel: it's already done or being delivered.",
    "cancel_ok": "Cancelled.",
    "redo_ok": "Retouching again with fidelity {fidelity:g}…",
    "redo_not_offered": (
        "Redo takes fidelity {choices} only. Nothing was retouched, and nothing counted "
        "against your quota."
    ),
    "no_attach_permission": (
        "I can't post images in this channel (I need the Attach Files permission). "
        "Ask a moderator to grant it, or use me in a direct message."
    ),
    # Compare: the before/after image under a result.
    "compare": "Compare",
    "compare_caption": "Before · after (fidelity {fidelity:g}). Free: it doesn't count.",
    "compare_gone": (
        "I no longer keep that result, so I can't compare it. Send the photo again if you like."
    ),
    "compare_sent": "Here is the before/after.",
    "not_your_buttons": "These buttons are for the person who asked.",
    # /language and /whoami.
    "language_show": "I speak {language} with you. Choose:",
    "language_saved": "Done: I'll speak English with you.",
    "language_auto": "Done: I'll follow your app's language (and the group's, where it has one).",
    "language_usage": "Usage: /language en, /language zh or /language auto",
    "lang:en": "English",
    "lang:zh": "中文",
    "lang:auto": "Automatic",
    "whoami": (
        "Your id is `{user}`. The bot's operator writes it like that in ADMIN_IDS or "
        "ACCESS_ALLOWED_USERS."
    ),
    "whoami_chat": "\nThis chat is `{chat}` (for ACCESS_ALLOWED_CHATS).",
    # /settings of a group chat.
    "settings_title": "**Settings of {chat}** (only its admins can change them):",
    "settings_line": "{name}: **{value}**",
    "settings_pick": "**{name}** — now {value}. Choose:",
    "settings_private": (
        "/settings is for groups: add me to a group and send it there. "
        "Your own settings are /fidelity and /language."
    ),
    "settings_not_admin": "Sorry, only this chat's admins can change its settings.",
    "settings_saved": "Saved: {name} is now {value}.",
    "settings_back": "‹ Back",
    "settings_close": "Done",
    "settings_closed": "Settings saved.",
    "admins_only_use": "In this chat only its admins can use me; ask one of them.",
    "set:fidelity": "Default fidelity",
    "set:auto": "Retouch every photo",
    "set:limit": "Daily limit for the chat",
    "set:who": "Who may use me",
    "set:lang": "Language",
    "v:bot_default": "the bot's ({fidelity:g})",
    "v:on": "on",
    "v:off": "off",
    "v:no_limit": "none of its own",
    "v:limit": "{limit} photos",
    "v:everyone": "everyone",
    "v:admins": "admins only",
    "v:each_own": "each member's own",
    # Telegram Stars.
    "buy_offer": (
        "Extra photos are used after your daily allowance and never expire. "
        "Payment is in Telegram Stars. Pick a pack:"
    ),
    "buy_pack": "{photos} photos — {stars} ⭐",
    "buy_off": "This bot doesn't sell extra photos.",
    "buy_private": "To buy photos, send me /buy in a private chat.",
    "invoice_title": "{photos} photo retouches",
    "invoice_description": (
        "{photos} extra photo retouches, used after your daily allowance. They never expire."
    ),
    "invoice_label": "{photos} photos",
    "invoice_sent": "Here is your invoice.",
    "paid": "Thank you! {photos} photos were added: you have {credits} extra photos now.",
    "offer_gone": "This offer is no longer available; send /buy to see the current packs.",
    "paysupport": (
        "Questions about a payment or a refund? Contact {support} and include the date and "
        "the number of Stars. Refunds are made in Stars."
    ),
    "terms": (
        "**Terms of sale.** Bought photos are retouches on top of your daily allowance on this "
        "bot. They are used after the daily allowance, never expire and can't be transferred. A "
        "photo that could not be retouched never counts. A purchase is refunded in Stars on "
        "request (/paysupport) while none of its photos were used."
    ),
    "terms_more": "\nFull terms: {url}",
    # Discord only.
    "d:help": (
        "Use /retouch with a portrait photo and I'll post it back retouched. The optional "
        "`fidelity` runs from 0 to 1: lower retouches more, 1 keeps the photo nearly as it is; "
        "0.1 is a clear retouch (the default), 0.3 a moderate one, 0.5 and 0.7 a light touch.\n"
        "On a message with photos: Apps → Retouch photo.\n\n"
        "/quota — your photos left today\n"
        "/fidelity 0.3 — save your default strength (/fidelity alone shows it)\n"
        "/language — English or 中文\n"
        "/whoami — your id, for the bot's operator\n"
        "/settings — the server's settings (Manage Server)\n"
        "/forget — delete what I keep about you"
    ),
    "d:result_title": "Retouched",
    "d:fidelity": "Fidelity",
    "d:time": "Time",
    "d:seconds": "{seconds:.1f} s",
    "d:left": "Left today",
    "d:unlimited": "no limit",
    "d:late": (
        "{mention} here is your retouched photo (the command had expired, so I posted it here)."
    ),
    "d:no_images": "That message has no images I can retouch.",
    "d:settings_guild": "/settings is for servers: its Manage Server members set it there.",
    "d:settings_not_admin": "Sorry, only members with Manage Server can change these settings.",
    # Reasons, by error code; shown after "couldn't retouch that photo:" or on their own.
    "e:bad_fidelity": "the fidelity must be a number between 0 and 1, like 0.3 or 30%.",
    "e:not_an_image": "that file isn't an image I can read (JPEG, PNG, WebP or HEIC).",
    "e:animated_image": "animated images can't be retouched; please send a still photo.",
    "e:image_too_large": "the image is too large.",
    "e:no_face": "I couldn't find a face. A clear, front-facing portrait works best.",
    "e:forbidden_url": "I can't fetch images from that address.",
    "e:input_gone": "the photo is no longer available on the server; please send it again.",
    "e:upstream_auth": "the retouch service isn't configured correctly (the operator is told).",
    "e:upstream_rate_limited": "the retouch service is busy right now; please try again shortly.",
    "e:upstream_unavailable": "the retouch service is unavailable right now; please try again.",
    "e:upstream_timeout": "the retouch service took too long; please try again.",
    "e:result_expired": "the result expired before I could fetch it; please try again.",
    "e:delivery_failed": "I couldn't upload the result here.",
    "e:busy": "I'm very busy right now; please try again in a minute.",
    "e:other": "something went wrong on my side.",
    # Rejections before a job exists (nothing counted).
    "r:quota_exceeded": "You've used all {limit} photos for today. Your quota resets {reset}.",
    "r:chat_quota_exceeded": (
        "This chat has used all {limit} photos for today. It resets {reset}."
    ),
    "r:too_many_in_flight": "You already have {limit} photos in progress; wait for them first.",
    "r:rate_limited": "That's a lot of photos at once — please wait {retry_after} s.",
    "r:access_denied": "This bot is private. Ask its operator for access.",
    "r:shutting_down": "I'm restarting; please send the photo again in a minute.",
    # When a reset comes.
    "t:reset": "at {time} {zone} ({left})",
    "t:in": "in {hours} h {minutes} min",
    "t:in_minutes": "in {minutes} min",
}

_ZH: dict[str, str] = {
    "start": (
        "你好！发送一张人像照片，我会为你美颜。\n"
        "可以加上说明，例如 `保真度 0.3` 来选择强度（0 到 1，越小越强）。/help 查看更多。"
    ),
    "help": (
        "发送一张人像照片（或以文件形式发送图片），我会把美颜后的照片发回给你。\n\n"
        "强度：在说明中写 0 到 1 的保真度——越小美颜越强，1 几乎保持原样。"
        "0.1 为明显美颜（默认），0.3 适中，0.5 和 0.7 为轻微修饰。\n"
        "示例：`保真度 0.3`、`fidelity 0.3`、`f=0.5`、`0.3`、`30%`。\n\n"
        "在群组中，请在照片说明里写 /retouch 或 @我，或回复一张照片并发送 `/retouch 0.3`。"
        "群管理员可以用 /settings 设置我在群里的行为。\n\n"
        "/quota — 今天剩余次数\n"
        "/fidelity 0.3 — 保存默认强度（只发 /fidelity 查看）\n"
        "/language — 选择 English 或中文\n"
        "/whoami — 你的 ID，供机器人运营者使用\n"
        "/forget — 删除我保存的关于你的数据"
    ),
    "help_buy": "\n/buy — 用 Telegram Stars 购买额外次数（/terms、/paysupport）",
    "received": "收到，正在准备你的照片…",
    "queued": "排队中，第 {position} 位…",
    "running": "正在美颜…",
    "delivering": "正在上传结果…",
    "done_caption": "美颜完成 · 保真度 {fidelity:g}{left}",
    "left_today": " · 今天还剩 {left} 次",
    "cancelled": "已取消，这张照片不计入你的次数。",
    "failed": "抱歉，这张照片没能完成美颜：{reason}这张照片不计入你的次数。",
    "send_a_photo": "请发送一张照片（或以文件形式发送图片）——我只能处理静态图片。",
    "not_an_image_file": "这个文件不是我能处理的图片。请发送 JPEG、PNG、WebP 或 HEIC 照片。",
    "file_too_big": "文件太大（{size} MB），请发送小于 {limit} MB 的文件。",
    "reply_to_photo": "请回复一条带照片的消息并发送 /retouch（可加 0.3）。",
    "fidelity_saved": "已保存：之后的照片默认使用保真度 {fidelity:g}。",
    "fidelity_cleared": "已清除：之后的照片使用默认保真度 {fidelity:g}。",
    "fidelity_show": "你的默认保真度是 {fidelity:g}{source}。用 /fidelity 0.3 修改。",
    "fidelity_source_default": "（机器人默认值）",
    "quota": "今天已用 {used}/{limit} 次，剩余 {left} 次{credits}。{reset}重置。",
    "quota_unlimited": "你没有每日限制。今天已用：{used} 次。",
    "quota_credits": "（另有 {credits} 次额外额度）",
    "quota_bought": "你用 Stars 购买了 {credits} 次（{count} 笔）。",
    "forget_confirm": (
        "删除你保存的设置和任务记录？进行中的照片会被取消。（今天的使用次数会保留。）"
    ),
    "forget_yes": "确认删除",
    "forget_no": "保留",
    "forget_done": "已删除你的设置和记录（{jobs} 个任务）。",
    "forget_kept": "没有删除任何内容。",
    "admin_only": "该命令仅限管理员使用。",
    "stats": (
        "今天（{day}）：{users} 位用户，{jobs} 个任务。\n按状态：{states}\n"
        "按平台：{platforms}\n队列：{queued} 个等待，{running} 个进行中。"
    ),
    "stats_purchases": (
        "\n今天的 Stars：{count} 笔购买，{credits} 次，{amount} ⭐（{refunded} 笔已退款）。"
    ),
    "grant_usage": "用法：/grant <用户> <次数>，例如 /grant 123456 5 或 /grant discord:42 5",
    "grant_done": "{user} 现在有 {credits} 次额外额度。",
    "redo": "重做 {fidelity:g}",
    "cancel": "取消",
    "not_yours": "只有发送照片的人可以使用这些按钮。",
    "anonymous_sender": (
        "你正在以群组（或频道）的身份发言，我无法知道你是谁：次数和按钮都属于个人。"
        "请在管理员权限中关闭“匿名”，或在私聊中把照片发给我。"
    ),
    "job_gone": "这张照片已不可用——请重新发送。",
    "too_late": "无法取消：已经完成或正在发送。",
    "cancel_ok": "已取消。",
    "redo_ok": "正在以保真度 {fidelity:g} 重新美颜…",
    "redo_not_offered": "重做只能选择保真度 {choices}。没有进行美颜，也不计入你的次数。",
    "no_attach_permission": (
        "我无法在这个频道发送图片（需要“附加文件”权限）。请让管理员授权，或私信我使用。"
    ),
    "compare": "对比",
    "compare_caption": "美颜前 · 美颜后（保真度 {fidelity:g}）。免费，不计入次数。",
    "compare_gone": "我已不再保存这张结果，无法对比。需要的话请重新发送照片。",
    "compare_sent": "这是美颜前后的对比图。",
    "not_your_buttons": "这些按钮只供提问的人使用。",
    "language_show": "我现在用{language}和你交流。请选择：",
    "language_saved": "好的，我会用中文和你交流。",
    "language_auto": "好的，我会跟随你的应用语言（群里设置了语言时跟随群）。",
    "language_usage": "用法：/language en、/language zh 或 /language auto",
    "lang:en": "English",
    "lang:zh": "中文",
    "lang:auto": "自动",
    "whoami": "你的 ID 是 `{user}`。机器人运营者在 ADMIN_IDS 或 ACCESS_ALLOWED_USERS 中这样填写。",
    "whoami_chat": "\n本群是 `{chat}`（用于 ACCESS_ALLOWED_CHATS）。",
    "settings_title": "**{chat}的设置**（只有管理员可以修改）：",
    "settings_line": "{name}：**{value}**",
    "settings_pick": "**{name}**——当前为{value}。请选择：",
    "settings_private": (
        "/settings 用于群组：把我加入群组后在群里发送。你自己的设置是 /fidelity 和 /language。"
    ),
    "settings_not_admin": "抱歉，只有本群管理员可以修改设置。",
    "settings_saved": "已保存：{name}现在是{value}。",
    "settings_back": "‹ 返回",
    "settings_close": "完成",
    "settings_closed": "设置已保存。",
    "admins_only_use": "本群只有管理员可以使用我，请联系管理员。",
    "set:fidelity": "默认保真度",
    "set:auto": "美颜每张照片",
    "set:limit": "本群每日上限",
    "set:who": "谁可以使用",
    "set:lang": "语言",
    "v:bot_default": "机器人默认（{fidelity:g}）",
    "v:on": "开",
    "v:off": "关",
    "v:no_limit": "不单独设限",
    "v:limit": "{limit} 张",
    "v:everyone": "所有人",
    "v:admins": "仅管理员",
    "v:each_own": "跟随每位成员",
    "buy_offer": "额外次数在每日额度用完后使用，永不过期，用 Telegram Stars 支付。请选择：",
    "buy_pack": "{photos} 次 — {stars} ⭐",
    "buy_off": "这个机器人不出售额外次数。",
    "buy_private": "购买次数请私信我发送 /buy。",
    "invoice_title": "{photos} 次照片美颜",
    "invoice_description": "{photos} 次额外的照片美颜，在每日额度用完后使用，永不过期。",
    "invoice_label": "{photos} 次",
    "invoice_sent": "这是你的账单。",
    "paid": "谢谢！已添加 {photos} 次：你现在有 {credits} 次额外额度。",
    "offer_gone": "这个套餐已下架，请发送 /buy 查看当前套餐。",
    "paysupport": (
        "有关付款或退款的问题，请联系 {support}，并注明日期和 Stars 数量。退款以 Stars 退回。"
    ),
    "terms": (
        "**购买条款。**购买的次数是在本机器人每日额度之外的美颜次数，在每日额度用完后使用，"
        "永不过期，不可转让。未能完成美颜的照片不计次数。只要购买的次数尚未使用，"
        "可申请（/paysupport）以 Stars 全额退款。"
    ),
    "terms_more": "\n完整条款：{url}",
    "d:help": (
        "使用 /retouch 并附上一张人像照片，我会发回美颜后的照片。可选的 `fidelity`（保真度）"
        "取 0 到 1：越小美颜越强，1 几乎保持原样；"
        "0.1 为明显美颜（默认），0.3 适中，0.5 和 0.7 为轻微修饰。\n"
        "对带照片的消息：应用 → Retouch photo。\n\n"
        "/quota — 今天剩余次数\n"
        "/fidelity 0.3 — 保存默认强度（只发 /fidelity 查看）\n"
        "/language — 选择 English 或中文\n"
        "/whoami — 你的 ID，供机器人运营者使用\n"
        "/settings — 服务器的设置（需要“管理服务器”权限）\n"
        "/forget — 删除我保存的关于你的数据"
    ),
    "d:result_title": "美颜完成",
    "d:fidelity": "保真度",
    "d:time": "用时",
    "d:seconds": "{seconds:.1f} 秒",
    "d:left": "今天剩余",
    "d:unlimited": "不限",
    "d:late": "{mention} 这是你的美颜照片（命令已过期，所以发在这里）。",
    "d:no_images": "这条消息里没有我能美颜的图片。",
    "d:settings_guild": "/settings 用于服务器，由有“管理服务器”权限的成员设置。",
    "d:settings_not_admin": "抱歉，只有拥有“管理服务器”权限的成员可以修改这些设置。",
    "e:bad_fidelity": "保真度必须是 0 到 1 之间的数字，例如 0.3 或 30%。",
    "e:not_an_image": "这个文件不是我能读取的图片（JPEG、PNG、WebP 或 HEIC）。",
    "e:animated_image": "不能处理动图，请发送静态照片。",
    "e:image_too_large": "图片太大了。",
    "e:no_face": "没有检测到人脸。清晰的正面人像效果最好。",
    "e:forbidden_url": "我不能从这个地址获取图片。",
    "e:input_gone": "服务器上已找不到这张照片，请重新发送。",
    "e:upstream_auth": "美颜服务配置有误（已通知运营者）。",
    "e:upstream_rate_limited": "美颜服务现在很忙，请稍后再试。",
    "e:upstream_unavailable": "美颜服务暂时不可用，请稍后再试。",
    "e:upstream_timeout": "美颜服务超时，请再试一次。",
    "e:result_expired": "结果在获取前已过期，请再试一次。",
    "e:delivery_failed": "我无法在这里上传结果。",
    "e:busy": "我现在很忙，请一分钟后再试。",
    "e:other": "我这边出了点问题。",
    "r:quota_exceeded": "你今天的 {limit} 次已用完，{reset}重置。",
    "r:chat_quota_exceeded": "本群今天的 {limit} 次已用完，{reset}重置。",
    "r:too_many_in_flight": "你已有 {limit} 张照片在处理中，请先等待完成。",
    "r:rate_limited": "发送太频繁了——请等待 {retry_after} 秒。",
    "r:access_denied": "这是私有机器人，请联系运营者开通。",
    "r:shutting_down": "我正在重启，请一分钟后重新发送照片。",
    "t:reset": "将于 {zone} 时间 {time}（{left}）",
    "t:in": "{hours} 小时 {minutes} 分钟后",
    "t:in_minutes": "{minutes} 分钟后",
}

CATALOG: dict[Lang, dict[str, str]] = {"en": _EN, "zh": _ZH}

_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*([^*\n]+)\*\*")
_QUOTED = {"\\": "\ue000", "`": "\ue001", "*": "\ue002"}
"""Markup characters quoted in parameters, and the private-use stand-ins `to_html` hides them in."""


def lang_for(code: str | None) -> Lang:
    """The catalog for a platform language code (`zh-hans`, `zh-CN`, `en-US` ...)."""
    return language_code(code)


def text(key: str, lang: Lang = "en", **params: Any) -> str:
    """One line from the catalog, formatted; English when the language lacks it.

    Text parameters are quoted (`quote_markup`): a chat's title can't turn into markup.
    """
    template = CATALOG[lang].get(key) or _EN[key]
    quoted = {k: quote_markup(v) if isinstance(v, str) else v for k, v in params.items()}
    return template.format(**quoted)


def quote_markup(value: str) -> str:
    """`value` with the catalog's markup characters escaped (as Discord's markdown takes them)."""
    for char in _QUOTED:
        value = value.replace(char, "\\" + char)
    return value


def to_html(line: str) -> str:
    """A catalog line as Telegram HTML: escaped, then `code` and **bold** as tags.

    HTML escaping comes first, so nothing a user wrote (a name, a caption) becomes a tag, and
    quoted markup characters stay plain characters.
    """
    escaped = html.escape(line, quote=False)
    for char, stand_in in _QUOTED.items():
        escaped = escaped.replace("\\" + char, stand_in)
    escaped = _BOLD.sub(r"<b>\1</b>", _CODE.sub(r"<code>\1</code>", escaped))
    for char, stand_in in _QUOTED.items():
        escaped = escaped.replace(stand_in, char)
    return escaped


def when(ts: float, lang: Lang, tz: str = "UTC", now: float | None = None) -> str:
    """A reset time people can read, in the quota's zone and with the time left, e.g.
    "at 00:00 Asia/Shanghai (in 5 h 20 min)"."""
    moment = datetime.fromtimestamp(ts, zone(tz))
    left = time_left(ts - (now if now is not None else time.time()), lang)
    return text("t:reset", lang, time=f"{moment:%H:%M}", zone=tz, left=left)


def time_left(seconds: float, lang: Lang) -> str:
    """ "in 5 h 20 min", "in 20 min" (at least 1 min)."""
    minutes = max(1, round(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    if hours:
        return text("t:in", lang, hours=hours, minutes=minutes)
    return text("t:in_minutes", lang, minutes=minutes)


def reason(error: RetouchError, lang: Lang) -> str:
    """Why a job failed, in the user's words."""
    key = f"e:{error.code}"
    if key in _EN:
        return text(key, lang)
    if error.code.startswith("upstream") or error.code.startswith("result"):
        return text("e:upstream_unavailable", lang)
    return text("e:other", lang)


def failure(error: RetouchError, lang: Lang) -> str:
    """The whole line for a failed job."""
    return text("failed", lang, reason=reason(error, lang))


def rejection(error: RetouchError, lang: Lang) -> str:
    """The line for a request turned away before it became a job (nothing counted)."""
    key = f"r:{error.code}"
    if key in _EN:
        params = dict(error.params)
        if "resets_at" in params:
            params["reset"] = when(
                float(params["resets_at"]), lang, params.get("tz", "UTC"), params.get("now")
            )
        params.setdefault("reset", "")
        params.setdefault("limit", "")
        params.setdefault("retry_after", "")
        return text(key, lang, **params)
    if error.user_fault:
        return reason(error, lang)[:1].upper() + reason(error, lang)[1:]
    return failure(error, lang)


def quota_line(status: QuotaStatus, lang: Lang, bought: PurchaseTotals | None = None) -> str:
    """The `/quota` answer, with what the user bought with Stars."""
    extra = ""
    if bought is not None and bought.count:
        extra = text("quota_bought", lang, credits=bought.credits, count=bought.count)
    if status.limit is None:
        return text("quota_unlimited", lang, used=status.used) + extra
    credits = text("quota_credits", lang, credits=status.credits) if status.credits else ""
    return (
        text(
            "quota",
            lang,
            used=status.used,
            limit=status.limit,
            left=status.left,
            credits=credits,
            reset=when(status.resets_at, lang, status.tz, status.now),
        )
        + extra
    )


def stats_line(
    stats: Stats,
    queued: int,
    running: int,
    lang: Lang,
    purchases: PurchaseTotals | None = None,
) -> str:
    """The `/stats` answer for admins (with today's Stars purchases, when payments are on)."""
    line = text(
        "stats",
        lang,
        day=stats.day,
        jobs=stats.jobs,
        users=stats.users,
        states=_counts(stats.by_state),
        platforms=_counts(stats.by_platform),
        queued=queued,
        running=running,
    )
    if purchases is not None:
        line += text(
            "stats_purchases",
            lang,
            count=purchases.count,
            credits=purchases.credits,
            amount=purchases.amount,
            refunded=purchases.refunded,
        )
    return line


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "-"
