# bash completion for normlab (installed as
# share/bash-completion/completions/normlab). The commands and each command's
# options are read from normlab's own help, so that they never drift from it.

_normlab_commands() {
  "$1" --help 2>/dev/null | sed -n '/^Commands:/,/^$/s/^  \([a-z][a-z]*\) .*/\1/p'
}

_normlab_options() {
  "$1" help "$2" 2>/dev/null | grep -o -- '--[a-z][a-z-]*' | sort -u
}

# The names `normlab list` gives on its line "KIND: a, b, c" (norms, models).
_normlab_listed() {
  "$1" list 2>/dev/null | sed -n "s/^$2: *//p" | tr -d ','
}

_normlab() {
  local program=${COMP_WORDS[0]} cur=${COMP_WORDS[COMP_CWORD]}
  local prev=${COMP_WORDS[COMP_CWORD-1]}
  COMPREPLY=()
  if [[ $COMP_CWORD -eq 1 ]]; then
    COMPREPLY=($(compgen -W "$(_normlab_commands "$program") help --help --version" -- "$cur"))
    return
  fi
  local command=${COMP_WORDS[1]}
  if [[ $command == help ]]; then
    [[ $COMP_CWORD -eq 2 ]] &&
      COMPREPLY=($(compgen -W "$(_normlab_commands "$program")" -- "$cur"))
    return
  fi
  case $prev in
    --norm)
      COMPREPLY=($(compgen -W "$(_normlab_listed "$program" norms)" -- "$cur"))
      return ;;
    --model)
      COMPREPLY=($(compgen -W "$(_normlab_listed "$program" models)" -- "$cur")); return ;;
    --mode) COMPREPLY=($(compgen -W "train eval" -- "$cur")); return ;;
    --layout) COMPREPLY=($(compgen -W "nchw nhwc" -- "$cur")); return ;;
    --dtype) COMPREPLY=($(compgen -W "float32 float64 bfloat16" -- "$cur")); return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$(_normlab_options "$program" "$command")" -- "$cur"))
  elif [[ $command == list && $COMP_CWORD -eq 2 ]]; then
    COMPREPLY=($(compgen -W "norms blas" -- "$cur"))
  fi
  # Otherwise bash completes file names (complete -o default).
}

complete -o default -F _normlab normlab
