// Run first in <body> (a file, not inline, so the Content-Security-Policy allows no inline
// script): the NHS.UK frontend styles its components by these classes before they start.
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' nhsuk-frontend-supported' : '');
