// Warns a few minutes before the session ends (a fixed time after signing in, however busy the
// user is: nccid.portal.session_ended) and, once it has, goes to the sign-in page, which says
// the session ended; a form sent after the end goes there instead of being sent. The server
// put the seconds left in the page: this script asks it nothing, so it never extends a session.

const ends = document.getElementById('session-ends')
const dialog = document.getElementById('session-timeout')

function timeLeft (ms) {
  const minutes = Math.ceil(ms / 60000)
  return minutes <= 1 ? 'in less than a minute' : `in less than ${minutes} minutes`
}

function start () {
  const deadline = Date.now() + Number(ends.dataset.secondsLeft) * 1000
  const warnFrom = deadline - Number(ends.dataset.warningSeconds) * 1000
  const left = dialog.querySelector('[data-session-left]')
  let warned = false
  let returnFocus = null

  const goToSignIn = () => window.location.assign(dialog.dataset.signIn)

  function warn () {
    warned = true
    returnFocus = document.activeElement
    dialog.showModal()
    dialog.querySelector('[data-session-close]').focus() // the action that changes nothing
  }

  function tick () {
    const now = Date.now()
    if (now >= deadline) {
      clearInterval(timer)
      goToSignIn()
      return
    }
    const said = timeLeft(deadline - now)
    if (left.textContent !== said) left.textContent = said // the live region speaks changes only
    if (now >= warnFrom && !warned) warn()
  }

  dialog.querySelector('[data-session-close]').addEventListener('click', () => dialog.close())
  dialog.addEventListener('close', () => { // Carry on, or Escape
    if (returnFocus && returnFocus.isConnected) returnFocus.focus()
  })
  // A form sent after the end would reach the server signed out: go where it would lead.
  document.addEventListener('submit', (event) => {
    if (Date.now() >= deadline) {
      event.preventDefault()
      goToSignIn()
    }
  }, true)
  // Timers wait while a tab is hidden or the computer sleeps: look again when it is back.
  document.addEventListener('visibilitychange', tick)
  window.addEventListener('pageshow', tick)
  const timer = setInterval(tick, 1000)
  tick()
}

if (ends && dialog && typeof dialog.showModal === 'function') start()
