/*
 * sysmonenrich setup page (view sysmonenrich_setup).
 *
 * Stores the API keys of the reputation providers in Splunk's credential store
 * through splunkd's REST API, proxied by Splunk Web:
 *   realm    = "sysmonenrich"
 *   username = provider name ("virustotal", "malwarebazaar")
 *   create:  POST   /servicesNS/nobody/sysmonenrich/storage/passwords
 *                   name=<provider>&password=<key>&realm=sysmonenrich
 *   update:  POST   /servicesNS/nobody/sysmonenrich/storage/passwords/sysmonenrich%3A<provider>%3A
 *                   password=<key>
 *   remove:  DELETE the same entry
 *   status:  GET    the same entry (200 = set, 404 = not set)
 * The `sysmonenrich` command reads the keys back with the search's session key.
 *
 * A stored key is never put on the page: the page shows only "set" or "not
 * set", the key input is always empty and is cleared after saving, and the
 * status request asks only for the username field.
 */
require([
    'jquery',
    'splunk.util'
], function ($, splunkUtil) {
    'use strict';

    var APP = 'sysmonenrich';
    var REALM = 'sysmonenrich';
    var PROVIDERS = [
        {
            name: 'virustotal',
            label: 'VirusTotal',
            help: 'API v3 key (a free key allows 4 lookups a minute and 500 a day).'
        },
        {
            name: 'malwarebazaar',
            label: 'MalwareBazaar',
            help: 'abuse.ch Auth-Key.'
        }
    ];
    var COLLECTION = '/servicesNS/nobody/' + APP + '/storage/passwords';

    function entryPath(provider) {
        // "sysmonenrich:virustotal:" -> "sysmonenrich%3Avirustotal%3A"
        return COLLECTION + '/' + encodeURIComponent(REALM + ':' + provider + ':');
    }

    function formKey() {
        if (splunkUtil && typeof splunkUtil.getFormKey === 'function') {
            return splunkUtil.getFormKey();
        }
        var cookies = document.cookie ? document.cookie.split(';') : [];
        for (var i = 0; i < cookies.length; i++) {
            var c = $.trim(cookies[i]);
            if (c.indexOf('splunkweb_csrf_token_') === 0) {
                return decodeURIComponent(c.substring(c.indexOf('=') + 1));
            }
        }
        return '';
    }

    // One request to splunkd through Splunk Web. Resolves with the parsed
    // JSON (or null), rejects with {status, message}.
    function rest(method, path, data) {
        var url = splunkUtil.make_url('/splunkd/__raw' + path) + '?output_mode=json';
        if (method === 'GET' && data) {
            url += '&' + $.param(data, true);
            data = undefined;
        }
        var deferred = $.Deferred();
        $.ajax({
            url: url,
            type: method,
            data: data,
            dataType: 'json',
            cache: false,
            headers: { 'X-Splunk-Form-Key': formKey(), 'X-Requested-With': 'XMLHttpRequest' }
        }).done(function (body) {
            deferred.resolve(body || null);
        }).fail(function (xhr) {
            deferred.reject({ status: xhr.status, message: errorText(xhr) });
        });
        return deferred.promise();
    }

    function errorText(xhr) {
        var body = xhr.responseJSON;
        if (!body && xhr.responseText) {
            try { body = JSON.parse(xhr.responseText); } catch (e) { body = null; }
        }
        if (body && body.messages && body.messages.length && body.messages[0].text) {
            return body.messages[0].text;
        }
        if (xhr.status === 403) {
            return 'permission denied: storing keys needs the admin_all_objects capability ' +
                '(reading them needs list_storage_passwords)';
        }
        return 'HTTP ' + xhr.status;
    }

    function status(provider) {
        return rest('GET', entryPath(provider), { f: 'username' }).then(
            function () { return 'set'; },
            function (err) {
                if (err.status === 404) {
                    return $.Deferred().resolve('not set').promise();
                }
                return $.Deferred().reject(err).promise();
            }
        );
    }

    function save(provider, key, isSet) {
        if (isSet) {
            return rest('POST', entryPath(provider), { password: key });
        }
        return rest('POST', COLLECTION, { name: provider, password: key, realm: REALM }).then(
            null,
            function (err) {
                // Created meanwhile (another admin, another tab): update it.
                if (err.status === 409) {
                    return rest('POST', entryPath(provider), { password: key });
                }
                return $.Deferred().reject(err).promise();
            }
        );
    }

    function markConfigured() {
        // Stops Splunk Web from sending admins to this page when they open the app.
        return rest('POST', '/services/apps/local/' + APP, { configured: 'true' });
    }

    // ---- page ---------------------------------------------------------------

    // The dashboard renders its <html> panel after this script has loaded; wait
    // for the container (up to 30 s) instead of depending on SplunkJS's ready!.
    function whenPresent(selector, tries, fn) {
        var $el = $(selector);
        if ($el.length) {
            fn($el);
        } else if (tries > 0) {
            window.setTimeout(function () { whenPresent(selector, tries - 1, fn); }, 100);
        }
    }

    whenPresent('#sysmonenrich-setup', 300, function ($container) {
        render($container.empty());
    });

    function render($root) {
        var $message = $('<div class="sysmonenrich-message" role="status"></div>');
        var $table = $('<table class="table sysmonenrich-keys"></table>');
        $table.append(
            $('<thead></thead>').append(
                $('<tr></tr>')
                    .append($('<th></th>').text('Provider'))
                    .append($('<th></th>').text('Key'))
                    .append($('<th></th>').text('New key'))
                    .append($('<th></th>'))
            )
        );
        var $tbody = $('<tbody></tbody>').appendTo($table);

        $root.append(
            $('<p></p>').text(
                'The local list and CIRCL hashlookup need no key. Keys are optional: a provider ' +
                'without a key is skipped. Entering a new key replaces the stored one.'
            )
        );
        $root.append($table);
        $root.append($message);

        var $done = $('<button type="button" class="btn btn-primary"></button>').text('Finish setup');
        $root.append($('<div class="sysmonenrich-actions"></div>').append($done));

        function say(kind, text) {
            $message.removeClass('ok error').addClass(kind).text(text);
        }

        var rows = {};
        var PROVIDERS_LABEL = {};

        function showStatus(provider) {
            var row = rows[provider];
            row.$status.text('checking…').removeClass('set not-set');
            return status(provider).then(
                function (s) {
                    row.isSet = s === 'set';
                    row.$status.text(s).addClass(row.isSet ? 'set' : 'not-set');
                    row.$remove.prop('disabled', !row.isSet);
                },
                function (err) {
                    row.$status.text('unknown');
                    say('error', PROVIDERS_LABEL[provider] + ': ' + err.message);
                }
            );
        }

        $.each(PROVIDERS, function (_, p) {
            PROVIDERS_LABEL[p.name] = p.label;
            var inputId = 'sysmonenrich-key-' + p.name;
            var row = {
                isSet: false,
                $status: $('<span class="sysmonenrich-status"></span>'),
                $input: $('<input type="password" autocomplete="new-password" spellcheck="false">')
                    .attr('id', inputId)
                    .attr('placeholder', 'paste a new key'),
                $save: $('<button type="button" class="btn"></button>').text('Save'),
                $remove: $('<button type="button" class="btn"></button>').text('Remove').prop('disabled', true)
            };
            rows[p.name] = row;

            $tbody.append(
                $('<tr></tr>')
                    .append($('<td></td>')
                        .append($('<label></label>').attr('for', inputId).text(p.label))
                        .append($('<div class="help"></div>').text(p.help)))
                    .append($('<td></td>').append(row.$status))
                    .append($('<td></td>').append(row.$input))
                    .append($('<td></td>').append(row.$save).append(' ').append(row.$remove))
            );

            row.$save.on('click', function () {
                var key = $.trim(row.$input.val() || '');
                if (!key) {
                    say('error', p.label + ': enter a key first.');
                    return;
                }
                row.$save.prop('disabled', true);
                save(p.name, key, row.isSet).then(
                    function () {
                        row.$input.val('');
                        say('ok', p.label + ' key saved.');
                        markConfigured();
                        return showStatus(p.name);
                    },
                    function (err) {
                        say('error', p.label + ': ' + err.message);
                    }
                ).always(function () {
                    key = null;
                    row.$save.prop('disabled', false);
                });
            });

            row.$input.on('keydown', function (e) {
                if (e.which === 13) {
                    row.$save.trigger('click');
                }
            });

            row.$remove.on('click', function () {
                if (!window.confirm('Remove the stored ' + p.label + ' key?')) {
                    return;
                }
                rest('DELETE', entryPath(p.name)).then(
                    function () {
                        say('ok', p.label + ' key removed.');
                        return showStatus(p.name);
                    },
                    function (err) {
                        say('error', p.label + ': ' + err.message);
                    }
                );
            });

            showStatus(p.name);
        });

        $done.on('click', function () {
            markConfigured().then(
                function () {
                    window.location.href = splunkUtil.make_url('/app/' + APP + '/sysmonenrich_overview');
                },
                function (err) {
                    say('error', 'Could not mark the app as configured: ' + err.message);
                }
            );
        });
    }
});
