# sbx code-context driver for bash (docs/api.md, "Code contexts"). sbxd embeds this file and runs it as
# `bash -c <this>`: each cell is eval'd in this one shell, so variables, functions and the working
# directory persist. SIGINT (sbx interrupts the driver's whole session) ends the foreground command and,
# through the trap, the cell. `exit` in a cell ends the context. Marker protocol as the Python driver's.
__sbx_mark=$'\x1e'"$SBX_CONTEXT_TOKEN"
unset SBX_CONTEXT_TOKEN
__sbx_nonce=
__sbx_n=0
exec 3<&0 </dev/null
trap '' INT

# sbx_display FILE [MIME]: shows an image file the cell wrote (png, jpeg, gif) as a rich output.
sbx_display() {
  local f="$1" m="$2"
  [ -r "$f" ] || { echo "sbx_display: cannot read $f" >&2; return 1; }
  if [ -z "$m" ]; then
    case "$f" in
      *.png|*.PNG) m=image/png ;;
      *.jpg|*.jpeg|*.JPG|*.JPEG) m=image/jpeg ;;
      *.gif|*.GIF) m=image/gif ;;
      *) echo "sbx_display: give the image's MIME type for $f" >&2; return 1 ;;
    esac
  fi
  case "$m" in image/png|image/jpeg|image/gif) ;; *) echo "sbx_display: only png, jpeg and gif images" >&2; return 1 ;; esac
  printf '%s %s D {"data":{"%s":"%s"}}\n' "$__sbx_mark" "$__sbx_nonce" "$m" "$(base64 -w0 < "$f")"
}

__sbx_run() {
  __sbx_int=
  trap '__sbx_int=1; return 130' INT
  eval "$1"
}

while :; do
  __sbx_code=
  __sbx_nonce=
  while IFS= read -r __sbx_l <&3; do
    case "$__sbx_l" in
      "$__sbx_mark "*) __sbx_nonce="${__sbx_l#"$__sbx_mark "}"; break ;;
    esac
    __sbx_code="$__sbx_code$__sbx_l"$'\n'
  done
  [ -n "$__sbx_nonce" ] || exit 0
  __sbx_n=$((__sbx_n + 1))
  __sbx_run "$__sbx_code"
  __sbx_rc=$?
  trap '' INT
  printf '%s %s E\n' "$__sbx_mark" "$__sbx_nonce" >&2
  if [ -n "$__sbx_int" ]; then
    printf '%s %s R {"count":%d,"exit_code":%d,"error":{"name":"KeyboardInterrupt","value":"interrupted","traceback":[]}}\n' \
      "$__sbx_mark" "$__sbx_nonce" "$__sbx_n" "$__sbx_rc"
  elif [ "$__sbx_rc" -ne 0 ]; then
    printf '%s %s R {"count":%d,"exit_code":%d,"error":{"name":"CommandExecError","value":"exit status %d","traceback":[]}}\n' \
      "$__sbx_mark" "$__sbx_nonce" "$__sbx_n" "$__sbx_rc" "$__sbx_rc"
  else
    printf '%s %s R {"count":%d,"exit_code":0}\n' "$__sbx_mark" "$__sbx_nonce" "$__sbx_n"
  fi
done
