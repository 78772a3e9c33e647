# frozen_string_literal: true

module FnHost
  # A stem cell's SPECIALISE (protos/worker-protocol.md, "Stem cells"): the worker was started
  # before its function was known, as uid 0 holding only CAP_SETUID and CAP_SETGID, with a
  # generic environment and / as its working directory. These steps turn it into the worker a
  # spawn would have started; INIT's own steps follow, as for any worker.
  module StemCell
    # Step 1, 2 or 3 failed: nothing of the function has run, and the worker exits.
    class Failure < StandardError; end

    module_function

    # Steps 1-3, then the search paths a spawned worker would have set up from its environment.
    # Raises Failure naming the step and the OS error.
    def specialise(spec)
      started_with = ENV['RUBYLIB']
      take_identity(spec['identity'])
      replace_environment(spec['process_environment'])
      enter(spec['cwd'])
      apply_rubylib(started_with, ENV['RUBYLIB'])
    end

    # glibc's setgroups/setresgid/setresuid, which Ruby calls, change every thread's credentials
    # (the reader thread's too); leaving uid 0 for another uid also clears every capability.
    def take_identity(identity)
      return if identity.nil?

      uid = identity['uid']
      gid = identity['gid']
      begin
        Process.groups = []
        Process::Sys.setresgid(gid, gid, gid)
        Process::Sys.setresuid(uid, uid, uid)
      rescue SystemCallError, NotImplementedError, TypeError, RangeError => e
        raise Failure, "step 1 (identity): cannot take uid #{uid.inspect} gid #{gid.inspect}: #{e.message}"
      end
      taken = [Process.uid, Process.euid, Process.gid, Process.egid, Process.groups]
      return if taken == [uid, uid, gid, gid, []]

      raise Failure, "step 1 (identity): uid #{uid} gid #{gid} did not take: uid, euid, gid, egid, " \
                     "groups are #{taken.inspect}"
    end

    # Ruby's ENV is the C library's environ itself (setenv/unsetenv), so native code and child
    # processes see the same. Setting TZ, even to its own value, makes Ruby call tzset again.
    def replace_environment(environment)
      raise Failure, 'step 2 (environment): process_environment is not an object' unless environment.is_a?(Hash)

      ENV.replace(environment)
      ENV['TZ'] = ENV['TZ']
      # Only a RUBYOPT with --enable-gems loads RubyGems before SPECIALISE; it would keep the
      # cell's GEM_HOME and GEM_PATH.
      Gem.clear_paths if Object.const_defined?(:Gem, false)
    rescue SystemCallError, ArgumentError, TypeError => e
      raise Failure, "step 2 (environment): #{e.message}"
    end

    def enter(cwd)
      Dir.chdir(cwd)
    rescue SystemCallError, TypeError => e
      raise Failure, "step 3 (working directory): cannot enter #{cwd.inspect}: #{e.message}"
    end

    # Ruby puts RUBYLIB's entries on $LOAD_PATH only as it starts (verbatim, empty ones skipped,
    # after -I's and before its own directories), so the function's RUBYLIB (runtime.toml's
    # [layers] puts the layers' ruby/lib there) goes where it would have gone, in place of the
    # cell's own. Nothing has touched $LOAD_PATH before SPECIALISE.
    def apply_rubylib(started_with, now)
      return if started_with == now

      old = entries(started_with)
      require 'rbconfig'
      own = RbConfig::CONFIG.values_at('sitelibdir', 'sitearchdir', 'sitedir', 'vendorlibdir',
                                       'vendorarchdir', 'vendordir', 'rubylibdir', 'archdir')
      first_own = $LOAD_PATH.index { |dir| own.include?(dir) } || old.size
      $LOAD_PATH[[first_own - old.size, 0].max, old.size] = entries(now)
    end

    def entries(rubylib)
      rubylib.to_s.split(File::PATH_SEPARATOR).reject(&:empty?).map(&:freeze)
    end
  end
end
